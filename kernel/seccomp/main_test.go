//go:build cgo && seccomp

package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	runcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/internal/testutil"
)

// The test binary doubles as two helpers, chosen before any test runs:
//
//   - "init": runc's init for the containers of libcontainer_test.go. Like
//     the daemon, it installs the arch guard first.
//   - with envChild set: load a filter the way libcontainer does, then exec
//     a program under it (runChild).
const (
	envChild = "TCC_SECCOMP_TEST_CHILD" // JSON configs.Seccomp to load, or "none"
	envRoot  = "TCC_SECCOMP_TEST_ROOT"  // directory to chroot into before loading
	envGuard = "TCC_SECCOMP_TEST_GUARD" // "1": InstallArchGuard before loading
	envProc  = "TCC_SECCOMP_TEST_PROC"  // "1": mount proc at envRoot/proc first (in a new mount and pid namespace)
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		if err := InstallArchGuard(); err != nil {
			fmt.Fprintln(os.Stderr, "tcc test init:", err)
			os.Exit(1)
		}
		libcontainer.Init() // does not return
	}
	if cfg, ok := os.LookupEnv(envChild); ok {
		runChild(cfg)
	}
}

// childFailed is the exit status of a child that could not set itself up,
// so that it is never mistaken for the program's own result.
const childFailed = 125

// runChild chroots into envRoot (no /proc, no /sys: like a sandbox), loads
// the filter with libcontainer's own InitSeccomp, on this thread only as
// runc's init does, and exec's os.Args[1:] under it.
func runChild(cfgJSON string) {
	runtime.LockOSThread()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "tcc seccomp child:", err)
		os.Exit(childFailed)
	}
	// A killed probe must not leave a core file behind.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		fail(err)
	}
	root := os.Getenv(envRoot)
	if os.Getenv(envProc) == "1" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fail(err)
		}
		if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fail(err)
		}
	}
	if root != "" {
		if err := unix.Chroot(root); err != nil {
			fail(err)
		}
		if err := unix.Chdir("/"); err != nil {
			fail(err)
		}
	}
	if os.Getenv(envGuard) == "1" {
		if err := InstallArchGuard(); err != nil {
			fail(err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	if cfgJSON != "none" {
		var cfg configs.Seccomp
		if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
			fail(err)
		}
		if _, err := runcseccomp.InitSeccomp(&cfg); err != nil {
			fail(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TCC_SECCOMP_TEST_") {
			env = append(env, kv)
		}
	}
	fail(unix.Exec(os.Args[1], os.Args[1:], env))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if progDir != "" {
		os.RemoveAll(progDir)
	}
	os.Exit(code)
}

// Programs built from testdata/progs into progDir, once per test binary.
var (
	progDir  string
	progErrs = map[string]error{}
	progOnce sync.Once
)

type progSpec struct {
	name string
	cmd  []string // run in testdata/progs; "OUT" is replaced by the output path
}

var progSpecs = []progSpec{
	{"cstdio-glibc", []string{"gcc", "-static", "-O2", "-o", "OUT", "cstdio.c"}},
	{"cstdio-musl", []string{"musl-gcc", "-static", "-O2", "-o", "OUT", "cstdio.c"}},
	{"cslurp-glibc", []string{"gcc", "-static", "-O2", "-o", "OUT", "cslurp.c"}},
	{"cslurp-musl", []string{"musl-gcc", "-static", "-O2", "-o", "OUT", "cslurp.c"}},
	{"probe", []string{"gcc", "-static", "-O2", "-pthread", "-o", "OUT", "probe.c"}},
	{"gohello", []string{"GO", "build", "-trimpath", "-o", "OUT", "./gohello"}},
	{"gojson", []string{"GO", "build", "-trimpath", "-o", "OUT", "./gojson"}},
}

func buildProgs() {
	dir, err := os.MkdirTemp("", "tcc-seccomp-progs-")
	if err != nil {
		for _, s := range progSpecs {
			progErrs[s.name] = err
		}
		return
	}
	progDir = dir
	// Programs run as in a sandbox root: a directory holding only them,
	// and an empty proc for the runs that mount one.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "proc"), 0o555); err != nil {
		panic(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		// go test found a go tool to build us with; it is ours.
		//lint:ignore SA1019 only a fallback when go is not on PATH
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for _, s := range progSpecs {
		args := make([]string, len(s.cmd))
		for i, a := range s.cmd {
			switch a {
			case "OUT":
				a = filepath.Join(dir, s.name)
			case "GO":
				a = goTool
			}
			args[i] = a
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = "testdata/progs"
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			progErrs[s.name] = fmt.Errorf("%s: %v\n%s", strings.Join(s.cmd, " "), err, out)
		}
	}
}

// prog returns the path of a test program, building them all on first use.
// Without gcc the test cannot run; musl-gcc is optional.
func prog(t testing.TB, name string) string {
	t.Helper()
	progOnce.Do(buildProgs)
	if err := progErrs[name]; err != nil {
		if strings.HasSuffix(name, "-musl") {
			t.Skipf("musl program not built (apt-get install musl-tools): %v", err)
		}
		testutil.Unavailable(t, "cannot build %s: %v", name, err)
	}
	return filepath.Join(progDir, name)
}

// outcome is how a program under a filter ended.
type outcome struct {
	stdout, stderr string
	exitCode       int            // -1 when signalled
	signal         syscall.Signal // when signalled
}

func (o outcome) killedBySIGSYS() bool { return o.exitCode == -1 && o.signal == unix.SIGSYS }

func (o outcome) String() string {
	if o.exitCode == -1 {
		return fmt.Sprintf("killed by %v (stdout %q, stderr %q)", o.signal, trim(o.stdout), trim(o.stderr))
	}
	return fmt.Sprintf("exit %d (stdout %q, stderr %q)", o.exitCode, trim(o.stdout), trim(o.stderr))
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// runOpts says how to run a program under a filter.
type runOpts struct {
	profile *Profile // nil: no filter
	guard   bool     // InstallArchGuard first, as the sandbox's runc init does
	proc    bool     // in a new pid namespace with /proc mounted (filesystem.proc)
	env     []string
	stdin   []byte
	// stdoutGone closes the read end of stdout before the program starts,
	// as when the daemon stops reading a cell's oversized output.
	stdoutGone bool
}

// run runs progDir/argv[0] in a child chrooted into progDir (no /proc, no
// /sys, unless o.proc), under the profile's filter as libcontainer loads
// it, with stdin and stdout pipes.
func run(t testing.TB, o runOpts, argv ...string) outcome {
	t.Helper()
	testutil.RequireRoot(t) // chroot
	prog(t, argv[0])
	cfg := "none"
	if o.profile != nil {
		b, err := json.Marshal(o.profile.Config())
		if err != nil {
			t.Fatal(err)
		}
		cfg = string(b)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"/" + argv[0]}, argv[1:]...)...)
	cmd.Env = append([]string{envChild + "=" + cfg, envRoot + "=" + progDir}, o.env...)
	if o.guard {
		cmd.Env = append(cmd.Env, envGuard+"=1")
	}
	if o.proc {
		cmd.Env = append(cmd.Env, envProc+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(o.stdin), &stdout, &stderr
	if o.stdoutGone {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		defer w.Close()
		cmd.Stdout = w
	}
	err = cmd.Run()
	res := outcome{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.exitCode, res.signal = -1, ws.Signal()
			return res
		}
		res.exitCode = ws.ExitStatus()
	default:
		t.Fatalf("run %v: %v", argv, err)
	}
	if res.exitCode == childFailed {
		t.Fatalf("child setup failed: %s", res.stderr)
	}
	return res
}
