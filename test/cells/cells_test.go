// Package cells_test checks the adversarial test cells without attacking
// anything: their manifests parse and agree with the attack package, the
// binary refuses to run on the host, and the two harmless probes (pids,
// net-interfaces) pass their own guard inside a user+pid+net namespace.
// The attacks themselves run only inside the real sandbox, from the root
// integration tests in test/.
package cells_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/internal/testutil"
	"github.com/trustcells/tcc/test/cells/attack"
)

var variants = []string{"hostile", "hostile-seccomp", "hostile-privileged", "hostile-monitor", "hostile-halt"}

func parse(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(src)
	if err != nil {
		t.Fatalf("manifest.Parse(%s): %v", dir, err)
	}
	return m
}

func TestManifests(t *testing.T) {
	base := parse(t, "hostile")
	var schema struct {
		Properties struct {
			Attack struct {
				Enum []string `json:"enum"`
			} `json:"attack"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(base.Input, &schema); err != nil {
		t.Fatal(err)
	}
	if got, want := schema.Properties.Attack.Enum, attack.Names(); !slices.Equal(got, want) {
		t.Errorf("input schema's attack enum\n got %v\nwant %v (attack.Names)", got, want)
	}
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			m := parse(t, v)
			if m.Name != v || m.Entrypoint != v {
				t.Errorf("name %q, entrypoint %q: want both %q (make cells builds DIR/DIR)", m.Name, m.Entrypoint, v)
			}
			if string(m.Input) != string(base.Input) || string(m.Output) != string(base.Output) {
				t.Error("input or output schema differs from test/cells/hostile/cell.yaml; keep them identical")
			}
			if !slices.Contains(m.Syscalls.Extra, "getppid") {
				t.Error("syscalls.extra lacks getppid, which the pid-namespace guard calls first")
			}
			if m.Limits.Pids < 8 {
				t.Errorf("limits.pids = %d; a Go binary needs about 5 threads", m.Limits.Pids)
			}
			if len(m.Examples) == 0 {
				t.Error("no examples")
			}
			for _, ex := range m.Examples {
				if err := m.Input.Validate(ex.Input); err != nil {
					t.Errorf("example %s: input schema rejects it: %v", ex.Name, err)
				}
				if ex.Output != nil {
					if err := m.Output.Validate(ex.Output); err != nil {
						t.Errorf("example %s: output schema rejects the expected output: %v", ex.Name, err)
					}
				}
			}
		})
	}
}

func TestREADMECoversEveryAttack(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range attack.Names() {
		if !bytes.Contains(b, []byte("| `"+n+"` |")) {
			t.Errorf("README.md has no table row for attack %s", n)
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hostileBinary builds the hostile cell once per test run, static, as
// `make cells` does.
func hostileBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcc-hostile-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hostile")
		cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", binPath, "./hostile")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build hostile: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// TestRefusesOnHost runs every attack on the host, where the binary must
// do nothing but refuse.
func TestRefusesOnHost(t *testing.T) {
	bin := hostileBinary(t)
	for _, name := range attack.Names() {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin)
		cmd.Stdin = strings.NewReader(`{"attack": "` + name + `", "port": 1}`)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("%s: run = %v, want exit status 3", name, err)
		}
		if !strings.HasPrefix(stderr.String(), attack.RefusalMessage) || stdout.Len() != 0 {
			t.Errorf("%s: stdout %q, stderr %q; want nothing and the refusal", name, stdout.Bytes(), stderr.Bytes())
		}
	}
}

// TestHarmlessProbesInNamespace runs pids and net-interfaces as PID 1 of a
// new pid namespace (with a user and a network namespace, as any user may
// create), where the guard lets them through.
func TestHarmlessProbesInNamespace(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testutil.Unavailable(t, "unshare(1) not found: %v", err)
	}
	bin := hostileBinary(t)
	ns := []string{"--fork", "--pid", "--net", "--user", "--map-root-user"}
	tests := []struct {
		name, input string
		args        []string
		want        map[string]any
	}{
		{
			"pids via /proc", `{"attack": "pids"}`,
			slices.Concat(ns, []string{"--mount-proc", bin}),
			map[string]any{"attack": "pids", "blocked": true, "errno": "", "count": 1.0, "detail": "via /proc: 1 visible: self and 0 own children"},
		},
		{
			"pids via kill with children", `{"attack": "pids", "n": 2}`,
			// An empty tmpfs over /proc, in the private mount namespace,
			// makes the probe fall back to kill(pid, 0).
			slices.Concat(ns, []string{"--mount", "sh", "-c", "mount -t tmpfs tcc-test /proc && exec " + bin}),
			map[string]any{"attack": "pids", "blocked": true, "errno": "", "count": 3.0, "detail": "via kill(pid, 0): 3 visible: self and 2 own children"},
		},
		{
			"net-interfaces", `{"attack": "net-interfaces"}`,
			slices.Concat(ns, []string{"--mount-proc", bin}),
			map[string]any{"attack": "net-interfaces", "blocked": true, "errno": "", "count": 1.0, "detail": "interfaces: lo"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(unshare, tt.args...)
			cmd.Stdin = strings.NewReader(tt.input)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				if strings.Contains(stderr.String(), "unshare failed") {
					testutil.Unavailable(t, "cannot create namespaces here: %s", stderr.Bytes())
				}
				t.Fatalf("run: %v; stderr: %s", err, stderr.Bytes())
			}
			var got map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("output is not JSON: %v: %s", err, stdout.Bytes())
			}
			delete(got, "probes")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("output\n got %v\nwant %v", got, tt.want)
			}
			if err := parse(t, "hostile").Output.Validate(stdout.Bytes()); err != nil {
				t.Errorf("output schema rejects the output: %v", err)
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
