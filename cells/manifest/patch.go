package manifest

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PatchFiles returns yamlSrc with its top-level files mapping replaced by
// files (sorted by path), or added at the end if there is none. Everything
// else is kept as written, comments and blank lines included, so that
// `tccctl cell pack` leaves a reviewable diff in a hand-written cell.yaml.
//
// The files block is spliced into the text when the manifest is a block
// mapping; a flow (JSON) manifest, or a layout the splice cannot handle, is
// re-encoded from its YAML nodes instead, which keeps comments and order but
// not the exact formatting.
func PatchFiles(yamlSrc []byte, files map[string]Digest) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(yamlSrc, &doc); err != nil {
		return nil, fmt.Errorf("patch files: %w", yamlError(err))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("patch files: %w", &FieldError{Msg: "manifest must be a mapping of fields"})
	}
	root := doc.Content[0]
	var key *yaml.Node
	keyIndex := -1
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "files" {
			if key != nil {
				return nil, fmt.Errorf("patch files: %w", &FieldError{Path: "files", Line: k.Line, Msg: fmt.Sprintf("duplicate key (first at line %d)", key.Line)})
			}
			key, keyIndex = k, i
		}
	}

	if root.Style&yaml.FlowStyle == 0 {
		if out, ok := spliceFiles(yamlSrc, key, files); ok && samePatched(yamlSrc, out, files) {
			return out, nil
		}
	}

	value := filesNode(files)
	if root.Style&yaml.FlowStyle != 0 {
		value.Style = yaml.FlowStyle
	}
	if key != nil {
		old := root.Content[keyIndex+1]
		value.LineComment, value.HeadComment, value.FootComment = old.LineComment, old.HeadComment, old.FootComment
		root.Content[keyIndex+1] = value
	} else {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "files"}, value)
	}
	out, err := encodeYAML(&doc)
	if err != nil {
		return nil, fmt.Errorf("patch files: %w", err)
	}
	if !samePatched(yamlSrc, out, files) {
		return nil, fmt.Errorf("patch files: re-encoding cell.yaml changed more than its files; edit files by hand")
	}
	return out, nil
}

func filesNode(files map[string]Digest) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(files[p])})
	}
	if len(files) == 0 {
		n.Style = yaml.FlowStyle
	}
	return n
}

func encodeYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spliceFiles replaces the lines of the top-level files entry (the key's
// line and the indented lines after it) with a freshly encoded block, or
// appends one. It reports false when the layout is not one it understands.
func spliceFiles(src []byte, key *yaml.Node, files map[string]Digest) ([]byte, bool) {
	block, err := encodeYAML(&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "files"}, filesNode(files)}})
	if err != nil {
		return nil, false
	}
	lines := strings.SplitAfter(string(src), "\n")
	if key == nil {
		var b strings.Builder
		b.Write(src)
		if len(src) > 0 && !bytes.HasSuffix(src, []byte("\n")) {
			b.WriteByte('\n')
		}
		b.Write(block)
		return []byte(b.String()), true
	}
	if key.Column != 1 || key.Line < 1 || key.Line > len(lines) {
		return nil, false
	}
	start := key.Line - 1
	end := start + 1 // one past the last line of the entry
	for i := start + 1; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			break
		}
		end = i + 1
	}
	var b strings.Builder
	for _, l := range lines[:start] {
		b.WriteString(l)
	}
	b.Write(block)
	for _, l := range lines[end:] {
		b.WriteString(l)
	}
	return []byte(b.String()), true
}

// samePatched reports whether patched holds the same YAML data as src
// except for a files mapping equal to files.
func samePatched(src, patched []byte, files map[string]Digest) bool {
	var a, b map[string]any
	if yaml.Unmarshal(src, &a) != nil || yaml.Unmarshal(patched, &b) != nil || a == nil || b == nil {
		return false
	}
	want := map[string]any{}
	for p, d := range files {
		want[p] = string(d)
	}
	a["files"] = want
	return reflect.DeepEqual(a, b)
}
