package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// Severities in decreasing order of urgency.
var severities = []string{"critical", "high", "medium", "low"}

func severityRank(s string) int { return len(severities) - slices.Index(severities, s) }

// RuleSet is the content of rules.json.
type RuleSet struct {
	Version int    `json:"version"`
	Rules   []Rule `json:"rules"`
}

// Rule flags a resource of one type (or each element of one of its array
// fields, when Each is set) for which every condition in When holds.
type Rule struct {
	ID          string      `json:"id"`
	Severity    string      `json:"severity"`
	Resource    string      `json:"resource"`
	Title       string      `json:"title"`
	Each        string      `json:"each,omitempty"`
	When        []Condition `json:"when"`
	Message     string      `json:"message"`
	Remediation string      `json:"remediation"`
}

// Condition tests one field of an object.
type Condition struct {
	Field string `json:"field"`
	Op    string `json:"op"`
	// Value is the operand of eq, in (a list) and the ordered comparisons.
	Value json.RawMessage `json:"value,omitempty"`
	// Absent is the outcome when the field is missing, for the operators
	// that need a value (eq, in, gt, gte, lt, lte).
	Absent bool `json:"absent,omitempty"`
}

// ops lists the operators and whether they take a value.
var ops = map[string]bool{
	"is_true": false, "is_false": false, "not_true": false, "not_false": false,
	"eq": true, "in": true, "gt": true, "gte": true, "lt": true, "lte": true,
}

var ruleID = regexp.MustCompile(`^TCC-[A-Z0-9]+-[0-9]{3}$`)

// maxRulesSize bounds rules.json.
const maxRulesSize = 1 << 20

// loadRules reads and checks a rule file. Rules are data shipped in the
// capsule, so a bad rule is a packaging error and is reported as such.
func loadRules(path string) (*RuleSet, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return parseRules(path, b)
}

// readFile reads a small file with open, read and close only. os.ReadFile
// would also set up the runtime's poller (epoll_create1, eventfd2,
// epoll_ctl, epoll_pwait), four more syscalls for the seccomp filter to
// allow, for a file that cannot block.
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var b []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = append(b, buf[:n]...)
		if len(b) > maxRulesSize {
			return nil, fmt.Errorf("%s is larger than %d bytes", path, maxRulesSize)
		}
	}
}

func parseRules(path string, b []byte) (*RuleSet, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rs RuleSet
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rs.Version != 1 {
		return nil, fmt.Errorf("%s: version is %d, this cell reads version 1", path, rs.Version)
	}
	if len(rs.Rules) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	seen := map[string]bool{}
	for i, r := range rs.Rules {
		where := fmt.Sprintf("%s: rules[%d] (%s)", path, i, r.ID)
		switch {
		case !ruleID.MatchString(r.ID):
			return nil, fmt.Errorf("%s: id must look like TCC-S3-001", where)
		case seen[r.ID]:
			return nil, fmt.Errorf("%s: duplicate id", where)
		case !slices.Contains(severities, r.Severity):
			return nil, fmt.Errorf("%s: severity %q is not one of %s", where, r.Severity, strings.Join(severities, ", "))
		case r.Resource == "" || r.Title == "" || r.Message == "" || r.Remediation == "":
			return nil, fmt.Errorf("%s: resource, title, message and remediation are required", where)
		case len(r.When) == 0:
			return nil, fmt.Errorf("%s: when needs at least one condition", where)
		}
		seen[r.ID] = true
		for j, c := range r.When {
			needsValue, ok := ops[c.Op]
			switch {
			case c.Field == "":
				return nil, fmt.Errorf("%s: when[%d]: field is required", where, j)
			case !ok:
				return nil, fmt.Errorf("%s: when[%d]: unknown op %q", where, j, c.Op)
			case needsValue && len(c.Value) == 0:
				return nil, fmt.Errorf("%s: when[%d]: op %s needs a value", where, j, c.Op)
			case !needsValue && len(c.Value) > 0:
				return nil, fmt.Errorf("%s: when[%d]: op %s takes no value", where, j, c.Op)
			}
			if c.Op == "in" {
				var list []json.RawMessage
				if err := json.Unmarshal(c.Value, &list); err != nil {
					return nil, fmt.Errorf("%s: when[%d]: op in needs a list value", where, j)
				}
			}
			if c.Op == "gt" || c.Op == "gte" || c.Op == "lt" || c.Op == "lte" {
				var n float64
				if err := json.Unmarshal(c.Value, &n); err != nil {
					return nil, fmt.Errorf("%s: when[%d]: op %s needs a number", where, j, c.Op)
				}
			}
		}
	}
	return &rs, nil
}

// match reports whether every condition holds for obj.
func (r *Rule) match(obj map[string]any) bool {
	for _, c := range r.When {
		if !c.holds(obj) {
			return false
		}
	}
	return true
}

func (c *Condition) holds(obj map[string]any) bool {
	v, present := obj[c.Field]
	switch c.Op {
	case "is_true":
		return v == true
	case "is_false":
		return v == false
	case "not_true":
		return v != true
	case "not_false":
		return v != false
	}
	if !present || v == nil {
		return c.Absent
	}
	switch c.Op {
	case "eq":
		return equal(v, c.Value)
	case "in":
		var list []json.RawMessage
		_ = json.Unmarshal(c.Value, &list) // checked by parseRules
		return slices.ContainsFunc(list, func(w json.RawMessage) bool { return equal(v, w) })
	}
	x, ok := number(v)
	if !ok {
		return false
	}
	var y float64
	_ = json.Unmarshal(c.Value, &y) // checked by parseRules
	switch c.Op {
	case "gt":
		return x > y
	case "gte":
		return x >= y
	case "lt":
		return x < y
	case "lte":
		return x <= y
	}
	return false
}

// equal compares a decoded input value with a rule's JSON operand.
func equal(v any, operand json.RawMessage) bool {
	var w any
	dec := json.NewDecoder(bytes.NewReader(operand))
	dec.UseNumber()
	if dec.Decode(&w) != nil {
		return false
	}
	if x, ok := number(v); ok {
		y, ok := number(w)
		return ok && x == y
	}
	return v == w
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

var placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)

// render fills {field} placeholders in a rule message from obj.
func render(msg string, obj map[string]any) string {
	return placeholder.ReplaceAllStringFunc(msg, func(m string) string {
		v, ok := obj[m[1:len(m)-1]]
		if !ok || v == nil {
			return "(unset)"
		}
		if s, ok := v.(string); ok {
			return s
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "?"
		}
		return string(b)
	})
}
