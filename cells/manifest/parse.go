package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSize is the largest manifest Parse reads.
const MaxSize = 1 << 20

// Parse reads a manifest in YAML or JSON (JSON is YAML), strictly: unknown
// fields, wrong types, duplicate keys and missing required fields are errors.
// It fills in every default and validates the result. On failure the error
// is a *ValidationError listing every problem as a *FieldError.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, newValidationError([]*FieldError{{Msg: fmt.Sprintf("manifest is %d bytes; the limit is %s", len(data), Size(MaxSize))}})
	}
	root, ferr := parseYAML(data)
	if ferr != nil {
		return nil, newValidationError([]*FieldError{ferr})
	}
	d := &decoder{values: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, bad: map[string]bool{}}
	m := defaults()
	d.value(root, "", reflect.ValueOf(m).Elem())
	d.finish(m)
	if err := newValidationError(d.errs); err != nil {
		return nil, err
	}
	return m, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the root node of the single document in data.
func parseYAML(data []byte) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Msg: "manifest is empty"}
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, &FieldError{Line: next.Line, Msg: "more than one YAML document; a manifest is one document"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Msg: "manifest is empty"}
	}
	return doc.Content[0], nil
}

func yamlError(err error) *FieldError {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return &FieldError{Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder fills Go values from YAML nodes, driven by the json tags of the
// manifest types, and collects every problem instead of stopping at the
// first.
type decoder struct {
	errs []*FieldError
	// values maps the path of every field present with a non-null value to
	// its node; keys maps the path of every field present to its key node.
	// Validation uses them for line numbers and to tell "explicitly set"
	// from "defaulted".
	values map[string]*yaml.Node
	keys   map[string]*yaml.Node
	// bad holds the paths already reported, so that a value that failed to
	// decode is not reported again by validation.
	bad map[string]bool
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
	d.bad[path] = true
}

// failAt reports a problem found after decoding, at the field's line.
func (d *decoder) failAt(path, format string, args ...any) {
	if d.bad[path] {
		return
	}
	n := d.values[path]
	if n == nil {
		n = d.keys[path]
	}
	d.fail(n, path, format, args...)
}

func (d *decoder) aliasError(n *yaml.Node, path string) {
	d.fail(n, path, "YAML aliases (*%s) are not supported; write the value out", n.Value)
}

// plainTag reports whether n carries no tag beyond the core JSON-like ones.
func (d *decoder) plainTag(n *yaml.Node, path string) bool {
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq", "!!timestamp":
		return true
	}
	d.fail(n, path, "YAML tag %s is not supported (values must be plain JSON)", truncate(n.ShortTag(), 40))
	return false
}

// set reports whether the field at path was given a non-null value.
func (d *decoder) set(path string) bool { return d.values[path] != nil }

var (
	typeSize     = reflect.TypeFor[Size]()
	typeDuration = reflect.TypeFor[Duration]()
	typeSchema   = reflect.TypeFor[Schema]()
	typeRawJSON  = reflect.TypeFor[json.RawMessage]()
	typeDevice   = reflect.TypeFor[Device]()
)

// value decodes n into v by v's type: the unit types and JSON values by
// their own rules, everything else by kind, structs by json tag. A null
// leaves v as it is (its default).
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		d.aliasError(n, path)
		return
	}
	if !d.plainTag(n, path) {
		return
	}
	// In an example, null is a JSON value like any other; everywhere else
	// it means "the default".
	if isNull(n) && v.Type() != typeRawJSON {
		return
	}
	switch v.Type() {
	case typeSchema, typeRawJSON:
		var buf bytes.Buffer
		if d.jsonValue(&buf, n, path, 0) {
			v.SetBytes(buf.Bytes())
		}
		return
	case typeSize:
		d.size(n, path, v)
		return
	case typeDuration:
		d.duration(n, path, v)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := d.str(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "must be true or false (got %s)", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		i, ok := d.integer(n, path)
		if ok {
			v.SetInt(i)
		}
	case reflect.Float64:
		f, ok := d.float(n, path)
		if ok {
			v.SetFloat(f)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "must be a list (got %s)", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			ep := path + "[" + strconv.Itoa(i) + "]"
			d.values[ep] = e
			if v.Type().Elem() == typeDevice && e.Kind == yaml.ScalarNode && e.Value == "null" {
				// devices: [null] means /dev/null, not a YAML null.
				s.Index(i).SetString("null")
				continue
			}
			if isNull(e) {
				d.fail(e, ep, "must not be null")
				continue
			}
			d.value(e, ep, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "must be a mapping (got %s)", describe(n))
			return
		}
		mv := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, e := n.Content[i], n.Content[i+1]
			key, ok := d.mapKey(k, path)
			if !ok {
				continue
			}
			kp := joinKey(path, key)
			if first, dup := seen[key]; dup {
				d.fail(k, kp, "duplicate key (first at line %d)", first.Line)
				continue
			}
			seen[key] = k
			d.keys[kp], d.values[kp] = k, e
			ev := reflect.New(v.Type().Elem()).Elem()
			if isNull(e) {
				d.fail(e, kp, "must not be null")
				continue
			}
			d.value(e, kp, ev)
			mv.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), ev)
		}
		v.Set(mv)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, path, v.Elem())
	case reflect.Struct:
		d.structure(n, path, v)
	default:
		panic("manifest: decoder cannot fill " + v.Type().String())
	}
}

// structure decodes a mapping into the fields of a struct, by json tag.
func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.fail(n, path, "manifest must be a mapping of fields (got %s)", describe(n))
		} else {
			d.fail(n, path, "must be a mapping (got %s)", describe(n))
		}
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, e := n.Content[i], n.Content[i+1]
		key, ok := d.mapKey(k, path)
		if !ok {
			continue
		}
		kp := joinKey(path, key)
		idx, known := fields.index[key]
		if !known {
			d.fail(k, kp, "%s", unknownField(key, fields.names))
			continue
		}
		if first, dup := seen[key]; dup {
			d.fail(k, kp, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[key] = k
		d.keys[kp] = k
		if !isNull(e) {
			d.values[kp] = e
		}
		d.value(e, kp, v.Field(idx))
	}
}

type structFields struct {
	index map[string]int
	names []string // in declared order, for "known: …"
}

func fieldsOf(t reflect.Type) structFields {
	f := structFields{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	return f
}

func unknownField(key string, known []string) string {
	msg := "unknown field"
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg + " (known: " + strings.Join(known, ", ") + ")"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!timestamp") {
		d.fail(n, path, "must be a string (got %s)", describe(n))
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.fail(n, path, "is not valid UTF-8")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.fail(n, path, "must be an integer (got %s)", describe(n))
		return 0, false
	}
	num, msg := yamlNumber(n)
	if msg != "" {
		d.fail(n, path, "%s", msg)
		return 0, false
	}
	i, ok := new(big.Int).SetString(num, 10)
	if !ok || !i.IsInt64() || i.Int64() != int64(int(i.Int64())) {
		d.fail(n, path, "%s is too large", truncate(n.Value, 40))
		return 0, false
	}
	return i.Int64(), true
}

func (d *decoder) float(n *yaml.Node, path string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		d.fail(n, path, "must be a number (got %s)", describe(n))
		return 0, false
	}
	num, msg := yamlNumber(n)
	if msg != "" {
		d.fail(n, path, "%s", msg)
		return 0, false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !finite(f) {
		d.fail(n, path, "number %s is out of range", truncate(n.Value, 40))
		return 0, false
	}
	return f, true
}

const sizeHint = "(use 64MiB, 1GiB…)"

func (d *decoder) size(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		num, msg := yamlNumber(n)
		i, ok := new(big.Int).SetString(num, 10)
		switch {
		case msg != "" || !ok:
			d.fail(n, path, "%q is not a size %s", truncate(n.Value, 40), sizeHint)
		case i.Sign() < 0:
			d.fail(n, path, "%s is negative; sizes are byte counts %s", truncate(n.Value, 40), sizeHint)
		case !i.IsInt64():
			d.fail(n, path, "%s is too large", truncate(n.Value, 40))
		default:
			v.SetInt(i.Int64())
		}
		return
	}
	s, ok := "", false
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		s, ok = n.Value, true
	}
	if !ok {
		d.fail(n, path, "%s is not a size %s", describe(n), sizeHint)
		return
	}
	sz, err := ParseSize(s)
	switch {
	case errors.Is(err, errSizeSyntax):
		if strings.HasPrefix(strings.TrimSpace(s), "-") {
			d.fail(n, path, "%q is negative; sizes are byte counts %s", truncate(s, 40), sizeHint)
		} else {
			d.fail(n, path, "%q is not a size %s", truncate(s, 40), sizeHint)
		}
	case err != nil:
		d.fail(n, path, "%q is not a size %s: %v", truncate(s, 40), sizeHint, err)
	default:
		v.SetInt(int64(sz))
	}
}

func (d *decoder) duration(n *yaml.Node, path string, v reflect.Value) {
	// Integers are nanoseconds: the canonical form writes durations so.
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		if i, ok := d.integer(n, path); ok {
			v.SetInt(i)
		}
		return
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.fail(n, path, "%s is not a duration (use 5s, 250ms, 1m30s…)", describe(n))
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "%q is not a duration (use 5s, 250ms, 1m30s…)", truncate(n.Value, 40))
		return
	}
	v.SetInt(int64(dur))
}
