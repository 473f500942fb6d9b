package manifest

import (
	"reflect"
	"strings"
	"testing"
)

func TestPatchFiles(t *testing.T) {
	files := map[string]Digest{
		"bin/echo":      DigestOf([]byte("binary")),
		"data/a b.json": DigestOf([]byte("{}")),
	}
	tests := []struct {
		name  string
		src   string
		keep  []string // substrings that must survive
		want  string   // substring the output must have
		exact string   // when set, the whole output
	}{
		{
			name: "add to block",
			src:  "# head comment\nversion: tcc/v1\nname: echo\n\n# the description\ndescription: >-\n  Returns\n  its input.\nentrypoint: bin/echo   # built by make\n",
			exact: "# head comment\nversion: tcc/v1\nname: echo\n\n# the description\ndescription: >-\n  Returns\n  its input.\nentrypoint: bin/echo   # built by make\n" +
				"files:\n  bin/echo: " + string(files["bin/echo"]) + "\n  data/a b.json: " + string(files["data/a b.json"]) + "\n",
		},
		{
			name: "replace in the middle",
			src:  "version: tcc/v1\nname: echo\nfiles:\n  old: sha256:" + testHex + "\n\n  # stale\n  older: sha256:" + testHex + "\n\n# about the description\ndescription: Returns its input.\nentrypoint: bin/echo\n",
			exact: "version: tcc/v1\nname: echo\n" +
				"files:\n  bin/echo: " + string(files["bin/echo"]) + "\n  data/a b.json: " + string(files["data/a b.json"]) + "\n" +
				"\n# about the description\ndescription: Returns its input.\nentrypoint: bin/echo\n",
		},
		{
			name: "replace flow value, no final newline",
			src:  "version: tcc/v1\nname: echo\ndescription: Returns its input.\nentrypoint: bin/echo\nfiles: {}",
			want: "files:\n  bin/echo: ",
		},
		{
			name: "JSON manifest",
			src:  `{"version": "tcc/v1", "name": "echo", "description": "Returns its input.", "entrypoint": "bin/echo", "files": {}}`,
			want: "bin/echo",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := PatchFiles([]byte(tt.src), files)
			if err != nil {
				t.Fatal(err)
			}
			if tt.exact != "" && string(out) != tt.exact {
				t.Errorf("got:\n%s\nwant:\n%s", out, tt.exact)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
			m := mustParse(t, out)
			if !reflect.DeepEqual(m.Files, files) {
				t.Errorf("files: got %v, want %v", m.Files, files)
			}
			if err := m.CheckFiles(); err != nil {
				t.Errorf("CheckFiles: %v", err)
			}
			again, err := PatchFiles(out, files)
			if err != nil || string(again) != string(out) {
				t.Errorf("patching twice changed the output:\n%s\n%s (%v)", out, again, err)
			}
		})
	}
}

func TestPatchFilesKeepsIdentityOfEverythingElse(t *testing.T) {
	src := readTestdata(t, "sha256.yaml")
	m := mustParse(t, src)
	out, err := PatchFiles(src, m.Files)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(src) {
		t.Errorf("patching with the same files changed cell.yaml:\n%s", out)
	}
	if got := mustParse(t, out).Identity(); got != m.Identity() {
		t.Errorf("identity changed: %s, want %s", got, m.Identity())
	}
}

func TestPatchFilesErrors(t *testing.T) {
	for _, src := range []string{"", "- a", "a: [", "files: {}\nfiles: {}\n"} {
		if out, err := PatchFiles([]byte(src), nil); err == nil {
			t.Errorf("PatchFiles(%q) = %q, want an error", src, out)
		}
	}
}
