package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with one field of a manifest.
type FieldError struct {
	Path string // field path, e.g. "limits.memory", "examples[1].input"; "" for the whole manifest
	Line int    // 1-based line in the source, 0 when unknown
	Msg  string // what is wrong and, where it helps, what to write instead
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationError holds every problem Parse found, ordered by line.
// errors.As finds the individual *FieldError values through Unwrap.
type ValidationError struct {
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Errors) == 1 {
		return "invalid manifest: " + e.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid manifest: %d problems:", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n\t")
		b.WriteString(fe.Error())
	}
	return b.String()
}

func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// Has reports whether some error is at path.
func (e *ValidationError) Has(path string) bool {
	return slices.ContainsFunc(e.Errors, func(fe *FieldError) bool { return fe.Path == path })
}

func newValidationError(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	// Errors without a line (missing fields) come first, then source order.
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Errors: errs}
}
