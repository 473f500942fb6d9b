package manifest

import (
	"bytes"
	"encoding/json"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxValueDepth bounds the nesting of schemas and example values; deeper
// documents are refused rather than recursed into.
const maxValueDepth = 64

// maxExponent bounds the decimal exponent of a number; beyond it float64,
// which validators use, cannot hold the value anyway.
const maxExponent = 400

var decimalRE = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// jsonValue appends the canonical JSON of the YAML value n to buf: object
// keys sorted by byte order, numbers in canonicalNumber's form, strings as
// encoding/json writes them without HTML escaping, no space. It reports
// problems at path and returns false if there were any.
func (d *decoder) jsonValue(buf *bytes.Buffer, n *yaml.Node, path string, depth int) bool {
	if depth > maxValueDepth {
		d.fail(n, path, "nested more than %d levels deep", maxValueDepth)
		return false
	}
	if n.Kind == yaml.AliasNode {
		d.aliasError(n, path)
		return false
	}
	if !d.plainTag(n, path) {
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		type pair struct {
			key string
			val *yaml.Node
		}
		pairs := make([]pair, 0, len(n.Content)/2)
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key, kok := d.mapKey(k, path)
			if !kok {
				ok = false
				continue
			}
			if first, dup := seen[key]; dup {
				d.fail(k, joinKey(path, key), "duplicate key (first at line %d)", first.Line)
				ok = false
				continue
			}
			seen[key] = k
			pairs = append(pairs, pair{key, v})
		}
		slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.key, b.key) })
		buf.WriteByte('{')
		for i, p := range pairs {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, p.key)
			buf.WriteByte(':')
			ok = d.jsonValue(buf, p.val, joinKey(path, p.key), depth+1) && ok
		}
		buf.WriteByte('}')
		return ok
	case yaml.SequenceNode:
		ok := true
		buf.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			ok = d.jsonValue(buf, e, path+"["+strconv.Itoa(i)+"]", depth+1) && ok
		}
		buf.WriteByte(']')
		return ok
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!null":
			buf.WriteString("null")
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				d.fail(n, path, "%q is not a boolean", truncate(n.Value, 40))
				return false
			}
			buf.WriteString(strconv.FormatBool(b))
		case "!!int", "!!float":
			num, msg := yamlNumber(n)
			if msg != "" {
				d.fail(n, path, "%s", msg)
				return false
			}
			buf.WriteString(num)
		case "!!str", "!!timestamp":
			if !utf8.ValidString(n.Value) {
				d.fail(n, path, "is not valid UTF-8")
				return false
			}
			writeString(buf, n.Value)
		default:
			d.fail(n, path, "YAML tag %s is not supported (values must be plain JSON)", tag)
			return false
		}
		return true
	}
	d.fail(n, path, "is not a JSON value")
	return false
}

// mapKey returns the string key of a mapping entry.
func (d *decoder) mapKey(k *yaml.Node, path string) (string, bool) {
	switch {
	case k.Kind == yaml.AliasNode:
		d.aliasError(k, path)
		return "", false
	case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
		d.fail(k, path, "YAML merge keys (<<) are not supported; write the fields out")
		return "", false
	case k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str":
		d.fail(k, path, "key %s must be a string; quote it", describe(k))
		return "", false
	case !utf8.ValidString(k.Value):
		d.fail(k, path, "key is not valid UTF-8")
		return "", false
	}
	return k.Value, true
}

// yamlNumber returns the canonical JSON form of an !!int or !!float scalar,
// or a message saying why it has none.
func yamlNumber(n *yaml.Node) (string, string) {
	s := trimUnderscores(n.Value)
	if decimalRE.MatchString(s) && !(n.ShortTag() == "!!int" && isLegacyOctal(s)) {
		if c, ok := canonicalNumber(s); ok {
			return c, ""
		}
		return "", "number " + truncate(n.Value, 40) + " is out of range"
	}
	// 0x1f, 0o17, 0b101 and YAML 1.1 octals (017), as the YAML decoder reads them.
	if i, ok := new(big.Int).SetString(s, 0); ok {
		c, _ := canonicalNumber(i.String())
		return c, ""
	}
	switch strings.ToLower(strings.TrimLeft(s, "+-")) {
	case ".inf", ".nan":
		return "", n.Value + " has no JSON form (only finite numbers)"
	}
	return "", strconv.Quote(truncate(n.Value, 40)) + " is not a number"
}

// isLegacyOctal reports whether s is an integer like 017 that YAML reads
// in base 8.
func isLegacyOctal(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) > 1 && s[0] == '0' && strings.Trim(s, "0123456789") == ""
}

// canonicalNumber rewrites a decimal literal ([-+]digits[.digits][e±digits])
// into one form per value, exactly (no float rounding): integers without
// exponent up to 21 digits, plain decimals down to 1e-6, exponent notation
// otherwise, as ECMAScript prints numbers. It fails if the exponent is
// beyond ±maxExponent.
func canonicalNumber(lit string) (string, bool) {
	neg := false
	switch {
	case strings.HasPrefix(lit, "-"):
		neg, lit = true, lit[1:]
	case strings.HasPrefix(lit, "+"):
		lit = lit[1:]
	}
	mant, expStr, hasExp := strings.Cut(strings.ToLower(lit), "e")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expStr)
		if err != nil || e > 100*maxExponent || e < -100*maxExponent {
			return "", false
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	if digits == "" {
		return "0", true
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	// value = 0.digits × 10^point
	point := len(digits) + exp
	if point-1 > maxExponent || point-1 < -maxExponent {
		return "", false
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case exp >= 0 && point <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", exp))
	case exp < 0 && point > 0:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	case exp < 0 && point > -6:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -point))
		b.WriteString(digits)
	default:
		b.WriteString(digits[:1])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if point-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(point - 1))
	}
	return b.String(), true
}

// writeString writes s as a JSON string the way encoding/json does with
// HTML escaping off, so canonical bytes never depend on who encoded them.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // cannot fail for a string
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$-]*$`)

// joinKey extends a field path with a mapping key: a.b, or a["x/y"] when
// the key is not a plain word.
func joinKey(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		return path + "[" + strconv.Quote(truncate(key, 80)) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names what a node is, for "must be a string (got …)".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str", "!!timestamp":
			return strconv.Quote(truncate(n.Value, 40))
		}
		return truncate(n.Value, 40)
	}
	return "nothing"
}
