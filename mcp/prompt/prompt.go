package prompt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/trustcells/tcc/cells/manifest"
)

const (
	// Version is the only prompt format this package reads.
	Version = "tcc-prompt/v1"
	// File and SignatureFile are the two files of a prompt capsule.
	File          = "prompt.yaml"
	SignatureFile = "prompt.sig"

	// MaxSize caps prompt.yaml; MaxText caps one message's text.
	MaxSize      = 256 << 10
	MaxText      = 64 << 10
	maxArguments = 64
	maxMessages  = 256
)

var (
	// ErrInvalid marks a prompt.yaml that does not parse or validate.
	ErrInvalid = errors.New("invalid prompt")
	// ErrArguments marks arguments a prompt cannot be rendered with.
	ErrArguments = errors.New("invalid prompt arguments")
)

var (
	nameRE        = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	argRE         = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

// Prompt is a parameterised prompt template: what prompts/list shows and
// prompts/get renders.
type Prompt struct {
	Version     string     `json:"version" yaml:"version"`
	Name        string     `json:"name" yaml:"name"`
	Title       string     `json:"title,omitempty" yaml:"title"`
	Description string     `json:"description" yaml:"description"`
	Arguments   []Argument `json:"arguments" yaml:"arguments"`
	Messages    []Message  `json:"messages" yaml:"messages"`
	// Parent is the identity this version replaces; empty for the first
	// prompt of a name.
	Parent manifest.Identity `json:"parent,omitempty" yaml:"parent"`
}

// Argument is one parameter of a prompt.
type Argument struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description"`
	Required    bool   `json:"required,omitempty" yaml:"required"`
}

// Message is one message of the rendered prompt: text, or a resource
// embedded by URI (a vault document, resolved at prompts/get). Both may
// hold {{argument}} placeholders.
type Message struct {
	Role     string `json:"role" yaml:"role"` // "user" or "assistant"
	Text     string `json:"text,omitempty" yaml:"text"`
	Resource string `json:"resource,omitempty" yaml:"resource"`
}

// Error is a prompt.yaml that does not parse or validate; Problems name the
// field path of each.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "prompt.yaml: " + strings.Join(e.Problems, "; ")
}

func (e *Error) Unwrap() error { return ErrInvalid }

// Parse reads a prompt in YAML or JSON, strictly: unknown fields, several
// documents and every validation problem are errors (an *Error naming the
// field paths).
func Parse(data []byte) (*Prompt, error) {
	if len(data) > MaxSize {
		return nil, &Error{[]string{fmt.Sprintf("%d bytes; the limit is %d", len(data), MaxSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Prompt
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{[]string{"empty file"}}
		}
		return nil, &Error{[]string{strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{[]string{"more than one YAML document"}}
	}
	if p.Arguments == nil {
		p.Arguments = []Argument{}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks every rule of the format and reports all problems.
func (p *Prompt) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if p.Version != Version {
		bad("version: %q; want %q", p.Version, Version)
	}
	if !nameRE.MatchString(p.Name) {
		bad("name: %q is not a valid prompt name (lower-case letter, then up to 63 of a-z 0-9 _ -)", p.Name)
	}
	if strings.TrimSpace(p.Description) == "" {
		bad("description: required (hosts show it to choose the prompt)")
	}
	if p.Parent != "" {
		if _, err := manifest.ParseIdentity(string(p.Parent)); err != nil {
			bad("parent: %v", err)
		}
	}
	if len(p.Arguments) > maxArguments {
		bad("arguments: %d; at most %d", len(p.Arguments), maxArguments)
	}
	declared := map[string]bool{}
	for i, a := range p.Arguments {
		if !argRE.MatchString(a.Name) {
			bad("arguments[%d].name: %q is not a valid argument name (letter or _, then up to 63 of A-Z a-z 0-9 _)", i, a.Name)
		}
		if declared[a.Name] {
			bad("arguments[%d].name: %q is declared twice", i, a.Name)
		}
		declared[a.Name] = true
	}
	if len(p.Messages) == 0 {
		bad("messages: at least one message is required")
	}
	if len(p.Messages) > maxMessages {
		bad("messages: %d; at most %d", len(p.Messages), maxMessages)
	}
	for i, m := range p.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		if m.Role != "user" && m.Role != "assistant" {
			bad("%s.role: %q; want user or assistant", at, m.Role)
		}
		switch {
		case m.Text == "" && m.Resource == "":
			bad("%s: needs text or resource", at)
		case m.Text != "" && m.Resource != "":
			bad("%s: has both text and resource; use one message for each", at)
		}
		if len(m.Text) > MaxText {
			bad("%s.text: %d bytes; at most %d", at, len(m.Text), MaxText)
		}
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.Resource) {
			bad("%s: not valid UTF-8", at)
		}
		for _, field := range []struct{ name, s string }{{"text", m.Text}, {"resource", m.Resource}} {
			for _, ph := range placeholderRE.FindAllStringSubmatch(field.s, -1) {
				if !declared[ph[1]] {
					bad("%s.%s: placeholder {{%s}} names no declared argument", at, field.name, ph[1])
				}
			}
		}
		if m.Resource != "" && !placeholderRE.MatchString(m.Resource) {
			if err := checkURI(m.Resource); err != nil {
				bad("%s.resource: %v", at, err)
			}
		}
	}
	if len(errs) > 0 {
		return &Error{errs}
	}
	return nil
}

// checkURI accepts an absolute URI such as vault://acme/policies/a.md.
func checkURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%q is not an absolute URI (want e.g. vault://TENANT/PATH)", s)
	}
	return nil
}

// Canonical is the prompt's canonical encoding: JSON with fields in
// declared order, empty optional fields left out, no HTML escaping. Its
// SHA-256 is the identity.
func (p *Prompt) Canonical() []byte {
	c := *p
	if c.Arguments == nil {
		c.Arguments = []Argument{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		panic(err) // plain strings and bools always encode
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Identity is "sha256:" and the hex SHA-256 of Canonical.
func (p *Prompt) Identity() manifest.Identity {
	sum := sha256.Sum256(p.Canonical())
	return manifest.Identity("sha256:" + hex.EncodeToString(sum[:]))
}

// Part is one rendered message: Text, or the URI of a resource to embed.
type Part struct {
	Role        string
	Text        string
	ResourceURI string
}

// Render fills the placeholders with args. Every required argument must be
// given and every given argument declared; an optional argument left out
// renders as the empty string. Errors wrap ErrArguments.
func (p *Prompt) Render(args map[string]string) ([]Part, error) {
	var names []string
	for _, a := range p.Arguments {
		names = append(names, a.Name)
		if _, ok := args[a.Name]; a.Required && !ok {
			return nil, fmt.Errorf("%w: prompt %s needs argument %q", ErrArguments, p.Name, a.Name)
		}
	}
	for k := range args {
		if !slices.Contains(names, k) {
			want := "no arguments"
			if len(names) > 0 {
				want = "arguments " + strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("%w: prompt %s has no argument %q (it takes %s)", ErrArguments, p.Name, k, want)
		}
	}
	fill := func(s string) string {
		return placeholderRE.ReplaceAllStringFunc(s, func(ph string) string {
			return args[placeholderRE.FindStringSubmatch(ph)[1]]
		})
	}
	parts := make([]Part, 0, len(p.Messages))
	for i, m := range p.Messages {
		if m.Resource != "" {
			uri := fill(m.Resource)
			if err := checkURI(uri); err != nil {
				return nil, fmt.Errorf("%w: prompt %s, messages[%d].resource: %v", ErrArguments, p.Name, i, err)
			}
			parts = append(parts, Part{Role: m.Role, ResourceURI: uri})
			continue
		}
		parts = append(parts, Part{Role: m.Role, Text: fill(m.Text)})
	}
	return parts, nil
}
