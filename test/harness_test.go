// Package test holds TCC's root integration and end-to-end tests and the
// benchmark harness. Tests here start the real tccd binary on a temporary
// state directory and cgroup parent, drive it with the real tccctl binary
// and the official MCP Go SDK, and check the host afterwards: no cgroup,
// mount, process or state directory of the daemon may remain.
package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/testutil"
)

// repo is the repository root; bin is where TestMain built the binaries.
var (
	repo string
	bin  string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "tcc-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = dir
	// Binaries are built fresh from this tree, so `go test ./test/` needs
	// no earlier `make build`.
	for _, cmd := range []string{"tccd", "tccctl"} {
		if err := goBuild(filepath.Join(bin, cmd), "./cmd/"+cmd, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	if left := suiteLeftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "leftovers on the host after the suite:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	}
	return code
}

// envs lists every Env's cgroup parent and state dir, for suiteLeftovers.
var envs struct {
	sync.Mutex
	cgroups, states []string
}

// suiteLeftovers looks, after every test has run, for anything of any Env
// on the host: its cgroups in every hierarchy, mounts under its state dir,
// processes in its cgroups, and sandboxed processes (host uids from 1<<30,
// the sandboxes' id ranges) that sit in no tcc cgroup at all, which would
// mean one escaped its cgroup.
func suiteLeftovers() []string {
	envs.Lock()
	defer envs.Unlock()
	var left []string
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	hs = append(hs, "/sys/fs/cgroup")
	for _, cg := range envs.cgroups {
		for _, h := range hs {
			if _, err := os.Stat(filepath.Join(h, cg)); err == nil {
				left = append(left, "cgroup "+filepath.Join(h, cg))
			}
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		for _, st := range envs.states {
			if strings.Contains(line, st) {
				left = append(left, "mount "+line)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil {
			continue
		}
		for _, c := range envs.cgroups {
			if strings.Contains(string(cg), c+"/") {
				left = append(left, fmt.Sprintf("process %s in cgroup %s", filepath.Base(p), c))
			}
		}
		if uid, ok := procUID(p); ok && uid >= 1<<30 && !strings.Contains(string(cg), "tcc") {
			left = append(left, fmt.Sprintf("process %s with sandbox uid %d outside any tcc cgroup", filepath.Base(p), uid))
		}
	}
	return left
}

// procUID is the real uid of the process at /proc/PID.
func procUID(proc string) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(proc, "status"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			var uid uint32
			if _, err := fmt.Sscan(f[1], &uid); err == nil {
				return uid, true
			}
		}
	}
	return 0, false
}

// goBuild builds pkg (relative to the repo) to out; cgo builds get the
// seccomp tag, cells are static.
func goBuild(out, pkg string, cgo bool) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = repo
	env := os.Environ()
	if cgo {
		env = append(env, "CGO_ENABLED=1", "GOFLAGS=-tags=seccomp -buildvcs=false")
	} else {
		env = append(env, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		cmd.Args = append(cmd.Args[:3], "-ldflags=-s -w", "-o", out, pkg)
	}
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// Env is one tccd on its own state directory, socket and cgroup parent,
// with a dev signing key it trusts.
type Env struct {
	t        testing.TB
	Dir      string
	State    string
	Socket   string
	Cgroup   string // cgroup parent, e.g. /tcc-test-1a2b3c
	Key, Pub string // dev.key, dev.pub (the trust file)
	Log      string // the daemon's log file
	// DaemonEnv is added to tccd's environment and Tccd, if set, replaces
	// the tccd binary (set them before Start).
	DaemonEnv []string
	Tccd      string

	cmd  *exec.Cmd
	done chan error
	args []string
}

// NewEnv prepares an environment; Start runs the daemon. Cleanup stops it
// and checks that nothing of it remains on the host.
func NewEnv(t testing.TB, daemonArgs ...string) *Env {
	t.Helper()
	testutil.RequireRoot(t)
	// Not t.TempDir: every parent of the state dir must be searchable by
	// user-namespaced sandboxes, and t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "tcc-it-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &Env{
		t:      t,
		Dir:    dir,
		State:  filepath.Join(dir, "state"),
		Socket: filepath.Join(dir, "tcc.sock"),
		Cgroup: "/tcc-test-" + randHex(6),
		Key:    filepath.Join(dir, "dev.key"),
		Pub:    filepath.Join(dir, "dev.pub"),
		Log:    filepath.Join(dir, "tccd.log"),
		args:   daemonArgs,
	}
	envs.Lock()
	envs.cgroups, envs.states = append(envs.cgroups, e.Cgroup), append(envs.states, e.State)
	envs.Unlock()
	if out, code := e.Ctl("key", "generate", "dev", "--out", dir); code != 0 {
		t.Fatalf("key generate: %s", out)
	}
	t.Cleanup(func() {
		e.Stop()
		e.CheckNoLeftovers()
		if t.Failed() {
			if b, err := os.ReadFile(e.Log); err == nil {
				t.Logf("tccd log:\n%s", tail(string(b), 4000))
			}
		}
	})
	return e
}

// Start runs tccd and waits until it answers.
func (e *Env) Start() {
	e.t.Helper()
	if e.cmd != nil {
		e.t.Fatal("Start: tccd is already running")
	}
	args := append([]string{
		"--state-dir", e.State, "--socket", e.Socket, "--trust", e.Pub,
		"--ledger-key", e.Key, "--cgroup-parent", e.Cgroup, "--log-level", "debug",
	}, e.args...)
	logf, err := os.OpenFile(e.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.tccd(), args...)
	cmd.Env = append(os.Environ(), e.DaemonEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	logf.Close()
	e.cmd, e.done = cmd, make(chan error, 1)
	go func() { e.done <- cmd.Wait() }()
	c := e.Client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		select {
		case err := <-e.done:
			e.cmd = nil
			b, _ := os.ReadFile(e.Log)
			e.t.Fatalf("tccd exited at start: %v\n%s", err, tail(string(b), 4000))
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatal("tccd did not answer within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *Env) tccd() string {
	if e.Tccd != "" {
		return e.Tccd
	}
	return filepath.Join(bin, "tccd")
}

// Stop sends SIGTERM and waits for a clean exit.
func (e *Env) Stop() {
	e.t.Helper()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("tccd exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
		e.t.Errorf("tccd did not stop within 30s of SIGTERM")
	}
	e.cmd = nil
}

// Kill9 kills the daemon as a crash would.
func (e *Env) Kill9() {
	e.t.Helper()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.done
	e.cmd = nil
}

// Client is an API client on the daemon's socket.
func (e *Env) Client() *api.Client { return api.NewClient(e.Socket) }

// Ctl runs tccctl against the daemon and returns its combined output and
// exit code.
func (e *Env) Ctl(args ...string) (string, int) {
	e.t.Helper()
	out, errOut, code := e.CtlSplit(nil, args...)
	return out + errOut, code
}

// CtlSplit runs tccctl with stdin and returns stdout, stderr and the exit
// code.
func (e *Env) CtlSplit(stdin []byte, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(bin, "tccctl"), args...)
	cmd.Env = append(os.Environ(), "TCC_SOCKET="+e.Socket)
	cmd.Dir = e.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("tccctl %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// MustCtl runs tccctl and fails the test unless it exits 0.
func (e *Env) MustCtl(args ...string) string {
	e.t.Helper()
	out, code := e.Ctl(args...)
	if code != 0 {
		e.t.Fatalf("tccctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// cellBuilds caches cell binaries built once per test run.
var cellBuilds sync.Map // package dir → *cellBuild

type cellBuild struct {
	once sync.Once
	path string
	err  error
}

// Capsule copies the cell source directory src (relative to the repo, e.g.
// "cells/examples/sha256") into a fresh directory, builds its binary there,
// applies edit to its cell.yaml (nil: none), and returns the directory.
// Pack and Sign finish it.
func (e *Env) Capsule(src string, edit func(yaml string) string) string {
	e.t.Helper()
	name := filepath.Base(src)
	dst := filepath.Join(e.Dir, "capsules", name+"-"+randHex(4))
	if err := copyDir(filepath.Join(repo, src), dst); err != nil {
		e.t.Fatal(err)
	}
	v, _ := cellBuilds.LoadOrStore(src, &cellBuild{})
	b := v.(*cellBuild)
	b.once.Do(func() {
		b.path = filepath.Join(bin, "cells", strings.ReplaceAll(src, "/", "_"))
		b.err = goBuild(b.path, "./"+src, false)
	})
	if b.err != nil {
		e.t.Fatal(b.err)
	}
	data, err := os.ReadFile(b.path)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, name), data, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if edit != nil {
		y := filepath.Join(dst, "cell.yaml")
		raw, err := os.ReadFile(y)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(y, []byte(edit(string(raw))), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return dst
}

// Signed builds, packs and signs a capsule from src and returns the path
// of its .cell tar.
func (e *Env) Signed(src string, edit func(string) string) string {
	e.t.Helper()
	dir := e.Capsule(src, edit)
	tarPath := dir + ".cell"
	e.MustCtl("cell", "pack", dir, "-o", tarPath)
	e.MustCtl("cell", "sign", tarPath, "--key", e.Key)
	return tarPath
}

// Register builds, packs, signs and registers src; it returns the identity.
func (e *Env) Register(src string, edit func(string) string) string {
	e.t.Helper()
	r, err := e.Client().Register(context.Background(), mustOpen(e.t, e.Signed(src, edit)), "")
	if err != nil {
		e.t.Fatalf("register %s: %v", src, err)
	}
	return r.Identity
}

// CheckNoLeftovers fails the test if anything of this environment's
// sandboxes remains on the host: cgroups under its parent in any
// hierarchy, mounts under its state dir, processes in its cgroups.
func (e *Env) CheckNoLeftovers() {
	e.t.Helper()
	var left []string
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	hs = append(hs, "/sys/fs/cgroup")
	for _, h := range hs {
		d := filepath.Join(h, e.Cgroup)
		if _, err := os.Stat(d); err == nil {
			left = append(left, "cgroup "+d)
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if strings.Contains(line, e.State) {
				left = append(left, "mount "+line)
			}
		}
	}
	sbx := filepath.Join(e.State, "sandboxes")
	if ents, err := os.ReadDir(sbx); err == nil && len(ents) > 0 {
		left = append(left, "sandbox state "+sbx)
	}
	if len(left) > 0 {
		e.t.Errorf("leftovers on the host:\n  %s", strings.Join(left, "\n  "))
	}
}

func mustOpen(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, info.Mode().Perm())
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
