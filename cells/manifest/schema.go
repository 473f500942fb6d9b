package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
)

// MarshalJSON writes the schema as it is (canonical JSON after Parse).
func (s Schema) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte("null"), nil
	}
	return s, nil
}

// UnmarshalJSON keeps the raw JSON of the schema.
func (s *Schema) UnmarshalJSON(b []byte) error {
	*s = append((*s)[:0], b...)
	return nil
}

func (s Schema) String() string { return string(s) }

// Validator compiles the schema for validation. The result is safe for
// concurrent use; callers validating many values should keep it.
func (s Schema) Validator() (*Validator, error) {
	c, err := compileSchema(s)
	if err != nil {
		return nil, err
	}
	return &Validator{c}, nil
}

// Validate checks one JSON value against the schema.
func (s Schema) Validate(value []byte) error {
	v, err := s.Validator()
	if err != nil {
		return err
	}
	return v.Validate(value)
}

// Validator checks JSON values against a compiled schema.
type Validator struct{ c *compiled }

// Validate checks one JSON value.
func (v *Validator) Validate(value []byte) error { return v.c.validate(value) }

// supportedDrafts are the $schema values jsonschema-go validates.
var supportedDrafts = map[string]bool{
	"": true,
	"https://json-schema.org/draft/2020-12/schema": true,
	"http://json-schema.org/draft-07/schema#":      true,
	"https://json-schema.org/draft-07/schema#":     true,
}

type compiled struct{ rs *jsonschema.Resolved }

func compileSchema(raw Schema) (c *compiled, err error) {
	// The schema comes from a cell author; a panic in the library on a
	// strange schema must not take the caller down.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("schema not accepted by the validator: %v", r)
		}
	}()
	var s jsonschema.Schema
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if !supportedDrafts[s.Schema] {
		return nil, fmt.Errorf("$schema %q is not supported (use draft 2020-12 or draft-07, or leave $schema out)", s.Schema)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, err
	}
	return &compiled{rs: rs}, nil
}

func (c *compiled) validate(value []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("validator failed: %v", r)
		}
	}()
	v, err := unmarshalValue(value)
	if err != nil {
		return err
	}
	return c.rs.Validate(v)
}

// schema checks that an input or output schema is a JSON Schema object
// whose root type is "object", as MCP requires, and compiles it. It returns
// nil when the schema is unusable (and says why).
func (d *decoder) schema(field string, s Schema) *compiled {
	if !d.set(field) {
		// Absent or null: the default, which compiles.
		return mustCompile(s)
	}
	for p := range d.bad {
		if p == field || strings.HasPrefix(p, field+".") || strings.HasPrefix(p, field+"[") {
			return nil // already reported; do not check examples against a default
		}
	}
	var root map[string]json.RawMessage
	if err := json.Unmarshal(s, &root); err != nil {
		d.failAt(field, "must be a JSON Schema object (a mapping), got %s", truncate(string(s), 60))
		return nil
	}
	t, ok := root["type"]
	if !ok {
		d.failAt(field, `schema has no "type"; MCP needs type: object at the root`)
		return nil
	}
	if string(t) != `"object"` {
		d.failAt(field+".type", `must be "object" (MCP tools take and return JSON objects), got %s`, truncate(string(t), 60))
		return nil
	}
	c, err := compileSchema(s)
	if err != nil {
		d.failAt(field, "invalid JSON Schema: %v", err)
		return nil
	}
	return c
}

func mustCompile(s Schema) *compiled {
	c, err := compileSchema(s)
	if err != nil {
		panic(errors.New("manifest: default schema does not compile: " + err.Error()))
	}
	return c
}
