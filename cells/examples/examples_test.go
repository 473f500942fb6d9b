// Package examples_test checks every example cell as a capsule would see
// it: the manifest parses, the binary builds static, and each example in the
// manifest, run through the built binary with its data files beside it,
// gives the declared output, which the output schema accepts.
package examples_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
)

// buildCell builds the cell in dir into a fresh directory together with its
// data files (everything but sources, manifest and docs), like a capsule,
// and returns the binary's path.
func buildCell(t *testing.T, dir, entrypoint string) string {
	t.Helper()
	out := t.TempDir()
	bin := filepath.Join(out, entrypoint)
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, b)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || n == entrypoint || strings.HasSuffix(n, ".go") || strings.HasSuffix(n, ".md") || n == manifest.ManifestFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, n), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// withProgressPipe gives cmd a pipe as fd 3, as the daemon does, and
// returns a function that, after the run, returns what came through it.
func withProgressPipe(t *testing.T, cmd *exec.Cmd) func() []byte {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{w}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		done <- b
	}()
	return func() []byte {
		w.Close()
		return <-done
	}
}

// checkProgress checks that every line on fd 3 is a progress object and that
// config-audit, the cell that reports progress, sent some.
func checkProgress(t *testing.T, cell string, b []byte) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) == 0 {
		lines = nil
	}
	if cell == "config-audit" && len(lines) < 2 {
		t.Errorf("config-audit sent %d progress lines, want at least 2", len(lines))
	}
	for _, l := range lines {
		var p struct {
			Progress *float64 `json:"progress"`
			Message  string   `json:"message"`
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil || p.Progress == nil || *p.Progress < 0 || *p.Progress > 1 {
			t.Errorf("bad progress line %q (%v)", l, err)
		}
	}
}

func normalize(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// rejected are inputs each cell's input schema must refuse before launch.
var rejected = map[string][]string{
	"sha256": {
		`{}`,
		`{"text": "a", "base64": "YQ=="}`,
		`{"text": 1}`,
		`{"txt": "a"}`,
	},
	"json-query": {
		`{"document": {}}`,
		`{"query": "", "document": {}}`,
		`{"query": ".", "document": {}, "limit": 0}`,
		`{"query": ".", "document": {}, "limit": 10001}`,
		`{"query": ".", "document": {}, "extra": true}`,
	},
	"config-audit": {
		`{}`,
		`{"resources": [{"type": "vm", "name": "a"}]}`,
		`{"resources": [{"type": "database"}]}`,
		`{"resources": [{"type": "security_group", "name": "a", "ingress": [{"port": 70000, "cidr": "0.0.0.0/0"}]}]}`,
		`{"resources": [], "fail_on": "info"}`,
	},
}

func TestExampleCells(t *testing.T) {
	manifests, err := filepath.Glob("*/" + manifest.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(manifests) < 3 {
		t.Fatalf("found %d example cells, want at least 3", len(manifests))
	}
	for _, mf := range manifests {
		dir := filepath.Dir(mf)
		t.Run(dir, func(t *testing.T) {
			src, err := os.ReadFile(mf)
			if err != nil {
				t.Fatal(err)
			}
			m, err := manifest.Parse(src)
			if err != nil {
				t.Fatalf("manifest.Parse(%s): %v", mf, err)
			}
			if m.Name != dir || m.Entrypoint != dir {
				t.Errorf("name %q, entrypoint %q: want both %q (make cells builds DIR/DIR)", m.Name, m.Entrypoint, dir)
			}
			if n := len(m.Examples); n < 2 || n > 4 {
				t.Errorf("%d examples, want 2 to 4", n)
			}
			if m.Limits.Pids < 8 {
				t.Errorf("limits.pids = %d; a Go binary needs about 5 threads, keep at least 8", m.Limits.Pids)
			}
			for _, in := range rejected[dir] {
				if err := m.Input.Validate([]byte(in)); err == nil {
					t.Errorf("input schema accepts %s, want it rejected", in)
				}
			}
			bin := buildCell(t, dir, m.Entrypoint)
			for _, ex := range m.Examples {
				t.Run(ex.Name, func(t *testing.T) {
					if err := m.Input.Validate(ex.Input); err != nil {
						t.Fatalf("input schema rejects the example input: %v", err)
					}
					var stdout, stderr bytes.Buffer
					cmd := exec.Command(bin)
					cmd.Stdin = bytes.NewReader(ex.Input)
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					progress := withProgressPipe(t, cmd)
					if err := cmd.Run(); err != nil {
						t.Fatalf("run: %v; stderr: %s", err, stderr.Bytes())
					}
					checkProgress(t, dir, progress())
					if int64(stdout.Len()) > int64(m.Limits.Output) {
						t.Errorf("output is %d bytes, over limits.output %d", stdout.Len(), m.Limits.Output)
					}
					if err := m.Output.Validate(stdout.Bytes()); err != nil {
						t.Errorf("output schema rejects the output: %v\n%s", err, stdout.Bytes())
					}
					if ex.Output == nil {
						return
					}
					if got, want := normalize(t, stdout.Bytes()), normalize(t, ex.Output); !reflect.DeepEqual(got, want) {
						t.Errorf("output\n got %s\nwant %s", stdout.Bytes(), ex.Output)
					}
				})
			}
		})
	}
}

// goTool is the go command that runs this test: the one in GOROOT/bin
// when `go test` set GOROOT, else the first on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
