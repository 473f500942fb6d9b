package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, src []byte) *Manifest {
	t.Helper()
	m, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func TestParseDefaults(t *testing.T) {
	got := mustParse(t, readTestdata(t, "minimal.yaml"))
	want := &Manifest{
		Version:     "tcc/v1",
		Name:        "echo",
		Description: "Returns its input.",
		Entrypoint:  "bin/echo",
		Args:        []string{},
		Input:       Schema(`{"type":"object"}`),
		Output:      Schema(`{"type":"object"}`),
		Annotations: Annotations{ReadOnly: true, Idempotent: true},
		Phase:       PhaseAnalyze,
		Limits: Limits{
			Memory: 64 * MiB, Pids: 16, CPU: 1, Wall: Duration(10e9),
			Input: MiB, Output: MiB, Stderr: 64 * KiB, Tmp: 16 * MiB, OpenFiles: 64,
		},
		Syscalls:       Syscalls{Groups: []string{}, Extra: []string{}},
		Filesystem:     Filesystem{Devices: []Device{}},
		Network:        NetworkNone,
		Nondeterminism: []Nondeterminism{},
		Monitor:        Monitor{Policy: PolicyLog, Threshold: 1},
		Examples:       []Example{},
		Files:          map[string]Digest{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\ngot  %s\nwant %s", got.Canonical(), want.Canonical())
	}
}

func TestParseFullManifest(t *testing.T) {
	m := mustParse(t, readTestdata(t, "actuate.yaml"))
	checks := []struct {
		what      string
		got, want any
	}{
		{"args", m.Args, []string{"--mode", "strict", ""}},
		{"memory", m.Limits.Memory, Size(1536 * MiB)},
		{"output", m.Limits.Output, Size(2e6)},
		{"tmp", m.Limits.Tmp, Size(1 << 20)},
		{"openFiles (0x100)", m.Limits.OpenFiles, 256},
		{"wall", m.Limits.Wall.String(), "1m30s"},
		{"groups sorted, deduplicated", m.Syscalls.Groups, []string{"@basic-io", "@file-system", "@process"}},
		{"extra sorted, deduplicated", m.Syscalls.Extra, []string{"clock_gettime", "getrandom"}},
		{"devices: null is /dev/null", m.Filesystem.Devices, []Device{DeviceNull, DeviceURandom}},
		{"nondeterminism", m.Nondeterminism, []Nondeterminism{NondetRandom, NondetTime}},
		{"entropy max defaults to 8", *m.Monitor.Entropy, Band{Min: 1, Max: 8}},
		{"explicit annotations", m.Annotations, Annotations{Idempotent: true}},
		{"example names", []string{m.Examples[0].Name, m.Examples[1].Name, m.Examples[2].Name}, []string{"example-1", "second.one", "example-3"}},
		{"output null is no output", m.Examples[2].Output, json.RawMessage(nil)},
		{"numbers canonical", string(m.Examples[1].Input), `{"big":1000,"flag":"off","weight":-1}`},
		{"big integer kept exactly", strings.Contains(string(m.Input), `"maximum":1.2345678901234567890123e+22`), true},
		{"no HTML escaping", strings.Contains(string(m.Output), `"é\u2028<&>"`), true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.what, c.got, c.want)
		}
	}
}

func TestAnnotationDefaults(t *testing.T) {
	tests := []struct {
		phase, extra string
		want         Annotations
	}{
		{"observe", "", Annotations{ReadOnly: true, Idempotent: true}},
		{"analyze", "", Annotations{ReadOnly: true, Idempotent: true}},
		{"actuate", "", Annotations{Destructive: true}},
		{"actuate", "annotations: {readOnly: true}", Annotations{ReadOnly: true}},
		{"actuate", "annotations: {destructive: false, idempotent: true}", Annotations{Idempotent: true}},
		{"analyze", "annotations: {idempotent: false, openWorld: true}", Annotations{ReadOnly: true, OpenWorld: true}},
		{"analyze", "annotations: {readOnly: null}\ninput: null\noutput:\ntitle: ~", Annotations{ReadOnly: true, Idempotent: true}},
	}
	for _, tt := range tests {
		m := mustParse(t, withFields("phase: "+tt.phase+"\n"+tt.extra))
		if m.Annotations != tt.want {
			t.Errorf("phase %s %q: got %+v, want %+v", tt.phase, tt.extra, m.Annotations, tt.want)
		}
	}
}

// withFields is the minimal manifest plus extra top-level YAML.
func withFields(extra string) []byte {
	return []byte("version: tcc/v1\nname: echo\ndescription: Returns its input.\nentrypoint: bin/echo\n" + extra + "\n")
}

func TestParseErrors(t *testing.T) {
	const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		src  string // appended to the minimal manifest unless raw
		raw  bool
		path string // "" for a document-level error
		line int    // 0: not checked
		want string // fragment of the message
	}{
		// document
		{name: "empty", raw: true, src: "", want: "manifest is empty"},
		{name: "comments only", raw: true, src: "# nothing\n", want: "manifest is empty"},
		{name: "not a mapping", raw: true, src: "- a\n- b\n", line: 1, want: "manifest must be a mapping of fields (got a list)"},
		{name: "syntax", raw: true, src: "name: a\n  b: c\n", line: 2, want: "YAML syntax: mapping values are not allowed"},
		{name: "two documents", raw: true, src: "name: a\n---\nname: b\n", want: "more than one YAML document"},
		{name: "too large", raw: true, src: "description: " + strings.Repeat("x", MaxSize), want: "the limit is 1MiB"},
		{name: "alias", src: "title: &t hi\nargs: [*t]", path: "args[0]", want: "YAML aliases (*t) are not supported"},
		{name: "merge key", src: "limits:\n  <<: {pids: 2}", path: "limits", want: "merge keys (<<) are not supported"},
		{name: "custom tag", src: "input: !foo {type: object}", path: "input", want: "YAML tag !foo is not supported"},
		{name: "binary tag", src: "examples: [{input: !!binary aGk=}]", path: "examples[0].input", want: "YAML tag !!binary is not supported"},

		// unknown, duplicate, missing
		{name: "unknown field", src: "foo: 1", path: "foo", line: 5, want: "unknown field (known: version, name, title, description, entrypoint, args, input, output, annotations, phase, limits, syscalls, filesystem, network, nondeterminism, monitor, examples, parent, files)"},
		{name: "unknown nested with hint", src: "limits: {memroy: 1MiB}", path: "limits.memroy", want: `unknown field; did you mean "memory"?`},
		{name: "duplicate key", src: "name: again", path: "name", line: 5, want: "duplicate key (first at line 2)"},
		{name: "duplicate nested", src: "limits: {pids: 1, pids: 2}", path: "limits.pids", want: "duplicate key (first at line 5)"},
		{name: "duplicate in schema", src: "input: {type: object, type: object}", path: "input.type", want: "duplicate key"},
		{name: "missing name", raw: true, src: "version: tcc/v1\ndescription: d\nentrypoint: e\n", path: "name", want: "required field is missing"},
		{name: "null required", raw: true, src: "version: tcc/v1\nname:\ndescription: d\nentrypoint: e\n", path: "name", line: 2, want: "must not be empty (it is required)"},
		{name: "missing version", raw: true, src: "name: a\ndescription: d\nentrypoint: e\n", path: "version", want: "required field is missing"},

		// required fields' values
		{name: "version", raw: true, src: "version: tcc/v2\nname: a\ndescription: d\nentrypoint: e\n", path: "version", want: `"tcc/v2" is not supported (this tcc reads "tcc/v1")`},
		{name: "name upper", raw: true, src: "version: tcc/v1\nname: Echo\ndescription: d\nentrypoint: e\n", path: "name", want: `"Echo" is not a valid cell name`},
		{name: "name too long", raw: true, src: "version: tcc/v1\nname: a" + strings.Repeat("b", 64) + "\ndescription: d\nentrypoint: e\n", path: "name", want: "is not a valid cell name"},
		{name: "blank description", raw: true, src: "version: tcc/v1\nname: a\ndescription: '  '\nentrypoint: e\n", path: "description", want: "must not be empty"},
		{name: "entrypoint escapes", raw: true, src: "version: tcc/v1\nname: a\ndescription: d\nentrypoint: ../bin\n", path: "entrypoint", want: `path "../bin" contains ".."`},
		{name: "entrypoint absolute", raw: true, src: "version: tcc/v1\nname: a\ndescription: d\nentrypoint: /bin/sh\n", path: "entrypoint", want: `path "/bin/sh" is absolute`},
		{name: "entrypoint unclean", raw: true, src: "version: tcc/v1\nname: a\ndescription: d\nentrypoint: ./bin//x\n", path: "entrypoint", want: `is not clean; write "bin/x"`},
		{name: "entrypoint reserved", raw: true, src: "version: tcc/v1\nname: a\ndescription: d\nentrypoint: cell.yaml\n", path: "entrypoint", want: "reserved"},

		// types
		{name: "string wanted", src: "title: 12", path: "title", want: "must be a string (got 12)"},
		{name: "list element type", src: "syscalls: {extra: [read, write, 5]}", path: "syscalls.extra[2]", want: "must be a string (got 5)"},
		{name: "list wanted", src: "args: --x", path: "args", want: `must be a list (got "--x")`},
		{name: "null element", src: "args: [a, null]", path: "args[1]", want: "must not be null"},
		{name: "bool wanted", src: "filesystem: {tmp: yes}", path: "filesystem.tmp", want: `must be true or false (got "yes")`},
		{name: "integer wanted", src: "limits: {pids: 1.5}", path: "limits.pids", want: "must be an integer (got 1.5)"},
		{name: "integer too large", src: "limits: {pids: 99999999999999999999}", path: "limits.pids", want: "must be an integer"},
		{name: "number wanted", src: "limits: {cpu: fast}", path: "limits.cpu", want: `must be a number (got "fast")`},
		{name: "infinite number", src: "limits: {cpu: .inf}", path: "limits.cpu", want: ".inf has no JSON form"},
		{name: "mapping wanted", src: "limits: 5", path: "limits", want: "must be a mapping (got 5)"},
		{name: "non-string key", src: "files: {1: x}", path: "files", want: "key 1 must be a string; quote it"},

		// sizes and durations
		{name: "size syntax", src: "limits: {memory: 12x}", path: "limits.memory", want: `"12x" is not a size (use 64MiB, 1GiB…)`},
		{name: "size lower-case b", src: "limits: {memory: 64mb}", path: "limits.memory", want: `unknown unit "mb"`},
		{name: "size negative", src: "limits: {memory: -1}", path: "limits.memory", want: "-1 is negative"},
		{name: "size negative string", src: "limits: {memory: -1MiB}", path: "limits.memory", want: `"-1MiB" is negative`},
		{name: "size fraction of a byte", src: "limits: {memory: 1.5B}", path: "limits.memory", want: "not a whole number of bytes"},
		{name: "size overflow", src: "limits: {memory: 99999999999TiB}", path: "limits.memory", want: "is too large"},
		{name: "size overflow int", src: "limits: {memory: 9999999999999999999}", path: "limits.memory", want: "is too large"},
		{name: "size as list", src: "limits: {memory: [1]}", path: "limits.memory", want: "a list is not a size"},
		{name: "memory below", src: "limits: {memory: 2MiB}", path: "limits.memory", want: "2MiB is below the minimum 4MiB"},
		{name: "memory above", src: "limits: {memory: 9GiB}", path: "limits.memory", want: "9GiB is above the maximum 8GiB"},
		{name: "input below", src: "limits: {input: 100}", path: "limits.input", want: "100B is below the minimum 1KiB"},
		{name: "output above", src: "limits: {output: 257MiB}", path: "limits.output", want: "above the maximum 256MiB"},
		{name: "stderr above", src: "limits: {stderr: 17MiB}", path: "limits.stderr", want: "above the maximum 16MiB"},
		{name: "tmp above", src: "limits: {tmp: 5GiB}", path: "limits.tmp", want: "above the maximum 4GiB"},
		{name: "pids zero", src: "limits: {pids: 0}", path: "limits.pids", want: "0 is below the minimum 1"},
		{name: "pids above", src: "limits: {pids: 5000}", path: "limits.pids", want: "5000 is above the maximum 4096"},
		{name: "openFiles below", src: "limits: {openFiles: 3}", path: "limits.openFiles", want: "below the minimum 8"},
		{name: "cpu below", src: "limits: {cpu: 0}", path: "limits.cpu", want: "0 is below the minimum 0.01"},
		{name: "cpu above", src: "limits: {cpu: 65}", path: "limits.cpu", want: "65 is above the maximum 64"},
		{name: "duration syntax", src: "limits: {wall: 5 seconds}", path: "limits.wall", want: `"5 seconds" is not a duration (use 5s, 250ms, 1m30s…)`},
		{name: "duration negative", src: "limits: {wall: -5s}", path: "limits.wall", want: "-5s is not positive"},
		{name: "duration zero", src: "limits: {wall: 0s}", path: "limits.wall", want: "0s is not positive"},
		{name: "duration below", src: "limits: {wall: 5ms}", path: "limits.wall", want: "5ms is below the minimum 10ms"},
		{name: "duration above", src: "limits: {wall: 2h}", path: "limits.wall", want: "2h0m0s is above the maximum 1h0m0s"},

		// schemas
		{name: "schema not object", src: "input: [1]", path: "input", want: "must be a JSON Schema object"},
		{name: "schema no type", src: "input: {properties: {}}", path: "input", want: `schema has no "type"`},
		{name: "schema type string", src: "output: {type: string}", path: "output.type", want: `must be "object" (MCP tools take and return JSON objects), got "string"`},
		{name: "schema type list", src: "output: {type: [object, 'null']}", path: "output.type", want: `must be "object"`},
		{name: "schema invalid", src: "input: {type: object, properties: 5}", path: "input", want: "invalid JSON Schema"},
		{name: "schema bad draft", src: "input: {$schema: 'http://json-schema.org/draft-04/schema#', type: object}", path: "input", want: "is not supported (use draft 2020-12 or draft-07"},
		{name: "schema remote ref", src: "input: {type: object, $ref: 'https://example.com/s.json'}", path: "input", want: "invalid JSON Schema"},
		{name: "schema too deep", src: "input: {type: object, x: " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "}", path: "input.x" + strings.Repeat("[0]", 64), want: "nested more than 64 levels deep"},
		{name: "number out of range", src: "input: {type: object, maximum: !!float 1e999}", path: "input.maximum", want: "out of range"},
		{name: "number out of range for validator", src: "examples: [{input: {n: 1e300, m: !!float 1e+400}}]", path: "examples[0].input", want: "out of range"},

		// phase, annotations
		{name: "phase", src: "phase: run", path: "phase", want: `"run" is not a phase (observe, analyze or actuate)`},
		{name: "observe not read-only", src: "phase: observe\nannotations: {readOnly: false}", path: "annotations.readOnly", want: `must be true for phase "observe"`},
		{name: "analyze destructive", src: "annotations: {destructive: true}", path: "annotations.destructive", want: `must be false for phase "analyze"`},
		{name: "read-only destructive", src: "phase: actuate\nannotations: {readOnly: true, destructive: true}", path: "annotations.destructive", want: "a read-only cell cannot be destructive"},

		// syscalls, filesystem, network, nondeterminism
		{name: "group without @", src: "syscalls: {groups: [basic-io]}", path: "syscalls.groups[0]", want: `"basic-io" is not a syscall group name`},
		{name: "group upper", src: "syscalls: {groups: ['@Basic']}", path: "syscalls.groups[0]", want: "is not a syscall group name"},
		{name: "syscall name", src: "syscalls: {extra: [read, 'open at']}", path: "syscalls.extra[1]", want: `"open at" is not a syscall name`},
		{name: "device", src: "filesystem: {devices: [null, sda]}", path: "filesystem.devices[1]", want: `"sda" is not an available device (null, zero or urandom)`},
		{name: "network", src: "network: host", path: "network", line: 5, want: `network: "host" is not supported in tcc/v1 (only "none"); network grants come later`},
		{name: "nondeterminism", src: "nondeterminism: [random, weather]", path: "nondeterminism[1]", want: `"weather" is not a source of nondeterminism`},
		{name: "nondeterminism network", src: "nondeterminism: [network]", path: "nondeterminism[0]", want: `"network" needs a network grant, and network is "none"`},

		// monitor
		{name: "policy", src: "monitor: {policy: kill}", path: "monitor.policy", want: `"kill" is not a policy (log, throttle or halt)`},
		{name: "entropy range", src: "monitor: {entropy: {min: -1, max: 9}}", path: "monitor.entropy.min", want: "-1 is outside 0..8"},
		{name: "entropy max range", src: "monitor: {entropy: {max: 9}}", path: "monitor.entropy.max", want: "9 is outside 0..8"},
		{name: "entropy order", src: "monitor: {entropy: {min: 5, max: 3}}", path: "monitor.entropy", want: "min 5 is above max 3"},
		{name: "entropy unknown", src: "monitor: {entropy: {low: 1}}", path: "monitor.entropy.low", want: "unknown field (known: min, max)"},
		{name: "threshold", src: "monitor: {threshold: 0}", path: "monitor.threshold", want: "0 must be greater than 0"},

		// examples
		{name: "example input missing", src: "examples: [{name: a}]", path: "examples[0].input", want: "required field is missing"},
		{name: "example input schema", src: "input: {type: object, required: [text]}\nexamples: [{input: {}}, {input: {text: x}}, {input: {}}]", path: "examples[2].input", want: "does not match the input schema"},
		{name: "example input null", src: "examples: [{input: null}]", path: "examples[0].input", want: "does not match the input schema"},
		{name: "example input not object", src: "examples: [{input: 5}]", path: "examples[0].input", want: "does not match the input schema"},
		{name: "example output schema", src: "output: {type: object, properties: {n: {type: integer}}}\nexamples: [{input: {}, output: {n: x}}]", path: "examples[0].output", want: "does not match the output schema"},
		{name: "example name duplicate", src: "examples: [{name: a, input: {}}, {name: a, input: {}}]", path: "examples[1].name", want: `"a" is also the name of examples[0]`},
		{name: "example name default clash", src: "examples: [{input: {}}, {name: example-1, input: {}}]", path: "examples[1].name", want: `"example-1" is also the name of examples[0]`},
		{name: "example name syntax", src: "examples: [{name: 'a b', input: {}}]", path: "examples[0].name", want: "is not a valid example name"},
		{name: "example unknown field", src: "examples: [{input: {}, expect: {}}]", path: "examples[0].expect", want: "unknown field (known: name, input, output)"},

		// parent, files
		{name: "parent", src: "parent: sha256:ABC", path: "parent", want: `"sha256:ABC" is not an identity`},
		{name: "parent upper hex", src: "parent: sha256:" + strings.ToUpper(hex64), path: "parent", want: "is not an identity"},
		{name: "files digest", src: "files: {bin/echo: 1234}", path: `files["bin/echo"]`, want: "must be a string (got 1234)"},
		{name: "files digest syntax", src: "files: {bin/echo: md5:1234}", path: `files["bin/echo"]`, want: `"md5:1234" is not a digest`},
		{name: "files path escapes", src: "files: {../x: sha256:" + hex64 + "}", path: `files["../x"]`, want: `contains ".."`},
		{name: "files path absolute", src: "files: {/etc/passwd: sha256:" + hex64 + "}", path: `files["/etc/passwd"]`, want: "is absolute"},
		{name: "files reserved", src: "files: {cell.sig: sha256:" + hex64 + "}", path: `files["cell.sig"]`, want: "reserved"},
		{name: "files file and dir", src: "files: {bin: sha256:" + hex64 + ", bin/echo: sha256:" + hex64 + "}", path: `files["bin/echo"]`, want: `"bin" is listed as a file, so it cannot also be a directory`},
		{name: "files null", src: "files: {bin/echo: null}", path: `files["bin/echo"]`, want: "must not be null"},
		{name: "NUL in args", src: "args: [\"a\\0b\"]", path: "args[0]", want: "contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src)
			if !tt.raw {
				src = withFields(tt.src)
			}
			_, err := Parse(src)
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			var found *FieldError
			for _, fe := range ve.Errors {
				if fe.Path == tt.path && strings.Contains(fe.Error(), tt.want) {
					found = fe
					break
				}
			}
			if found == nil {
				t.Fatalf("no error at %q containing %q; got:\n%v", tt.path, tt.want, err)
			}
			if tt.line != 0 && found.Line != tt.line {
				t.Errorf("line: got %d, want %d (%v)", found.Line, tt.line, found)
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	_, err := Parse(withFields("limits: {memory: 12x, pids: 0}\nsyscalls: {extra: [5]}\nphase: later\nfoo: 1"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	var paths []string
	for _, fe := range ve.Errors {
		paths = append(paths, fe.Path)
	}
	want := []string{"limits.memory", "limits.pids", "syscalls.extra[0]", "phase", "foo"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths: got %q, want %q (one error each, in line order)", paths, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "limits.memory" {
		t.Errorf("errors.As(*FieldError): got %v, want the limits.memory error", fe)
	}
	if !strings.Contains(err.Error(), "5 problems") || !strings.Contains(err.Error(), "\n\tline 5: limits.memory: ") {
		t.Errorf("message: got %q", err)
	}
}

func TestSchemaErrorNotRepeatedOnExamples(t *testing.T) {
	_, err := Parse(withFields("title: &a t\ninput: {type: object, x: *a}\nexamples: [{input: 5}]"))
	var ve *ValidationError
	if !errors.As(err, &ve) || !ve.Has("input.x") || ve.Has("examples[0].input") || len(ve.Errors) != 1 {
		t.Errorf("got %v, want only the input.x error", err)
	}
}

func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m := mustParse(t, readTestdata(t, filepath.Base(f)))
			c := m.Canonical()
			m2, err := Parse(c)
			if err != nil {
				t.Fatalf("Parse(Canonical): %v\n%s", err, c)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Errorf("Parse(Canonical) differs:\ngot  %#v\nwant %#v", m2, m)
			}
			if c2 := m2.Canonical(); string(c2) != string(c) {
				t.Errorf("canonical bytes differ:\n%s\n%s", c, c2)
			}
			// The canonical form is plain JSON that encoding/json reads back.
			var m3 Manifest
			if err := json.Unmarshal(c, &m3); err != nil {
				t.Fatalf("json.Unmarshal(Canonical): %v", err)
			}
			if !reflect.DeepEqual(m, &m3) {
				t.Errorf("json.Unmarshal(Canonical) differs:\ngot  %#v\nwant %#v", &m3, m)
			}
		})
	}
}

func TestSameIdentity(t *testing.T) {
	base := mustParse(t, readTestdata(t, "sha256.yaml")).Identity()
	same := map[string][]byte{
		"JSON":                    readTestdata(t, "sha256.json"),
		"canonical":               mustParse(t, readTestdata(t, "sha256.yaml")).Canonical(),
		"reformatted with extras": []byte(reformattedSHA256),
	}
	for name, src := range same {
		if got := mustParse(t, src).Identity(); got != base {
			t.Errorf("%s: identity %s, want %s", name, got, base)
		}
	}

	changed := map[string]string{
		"file digest": `sha256: sha256:0000000000000000000000000000000000000000000000000000000000000000`,
		"limit":       `memory: 16MiB`,
		"title":       `title: SHA-256`,
	}
	replacement := map[string]string{
		"file digest": `sha256: sha256:1000000000000000000000000000000000000000000000000000000000000000`,
		"limit":       `memory: 17MiB`,
		"title":       `title: SHA256`,
	}
	for name, old := range changed {
		src := strings.Replace(string(readTestdata(t, "sha256.yaml")), old, replacement[name], 1)
		if got := mustParse(t, []byte(src)).Identity(); got == base {
			t.Errorf("changing the %s kept the identity", name)
		}
	}
}

// reformattedSHA256 is testdata/sha256.yaml with fields reordered, defaults
// written out, other spellings of the same values and duplicate list items.
const reformattedSHA256 = `
files: {sha256: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
examples:
- {input: {text: ''}, name: empty, output: {bytes: 0.0, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}}
- name: abc-base64
  input: {"base64": "YWJj"}
  output: {sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, bytes: 3}
monitor: {threshold: 2, policy: halt, entropy: {max: 6.5, min: 3.5}}
nondeterminism: []
network: none
filesystem: {}
syscalls: {extra: [exit_group, exit_group], groups: ["@basic-io"]}
limits: {memory: 16777216, pids: 1, cpu: 0.50, wall: 2000ms, input: 1024KiB, output: 4096B, stderr: 16 KiB, tmp: 16MiB, openFiles: 64}
annotations: {openWorld: false, readOnly: true, destructive: false, idempotent: true}
phase: analyze
output:
  additionalProperties: false
  required: [sha256, bytes]
  properties:
    bytes: {minimum: -0, type: integer}
    sha256: {pattern: "^[0-9a-f]{64}$", type: string}
  type: object
input:
  type: object
  properties: {text: {type: string, description: UTF-8 text to hash}, base64: {type: string, contentEncoding: base64, description: "bytes to hash, base64"}}
  oneOf: [{required: [text]}, {required: [base64]}]
  additionalProperties: false
args: []
entrypoint: sha256
description: "Returns the SHA-256 of the input, given as UTF-8 text (\"text\") or as base64-encoded bytes (\"base64\"), and the number of bytes hashed."
title: SHA-256
name: sha256
version: tcc/v1
`

func TestCheckFiles(t *testing.T) {
	tests := []struct {
		extra string
		want  string // "" for no error
	}{
		{"", "files: is empty; run tccctl cell pack"},
		{"files: {data/x: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}", `files: does not list the entrypoint "bin/echo"`},
		{"files: {bin/echo: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}", ""},
	}
	for _, tt := range tests {
		err := mustParse(t, withFields(tt.extra)).CheckFiles()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tt.extra, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: got %v, want %q", tt.extra, err, tt.want)
		}
	}
}

func TestSchemaValidate(t *testing.T) {
	m := mustParse(t, readTestdata(t, "sha256.yaml"))
	if err := m.Input.Validate([]byte(`{"text":"hi"}`)); err != nil {
		t.Errorf("valid input: %v", err)
	}
	if err := m.Input.Validate([]byte(`{"text":"hi","base64":"aGk="}`)); err == nil {
		t.Error("input with both text and base64 was accepted")
	}
	if err := m.Output.Validate([]byte(`{"sha256":"x","bytes":1}`)); err == nil {
		t.Error("output with a bad sha256 was accepted")
	}
	if _, err := m.Output.Validator(); err != nil {
		t.Errorf("Compile: %v", err)
	}
}
