package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/internal/testutil"
)

// probePath is the probe cell built by TestMain, in a root-only directory;
// probeFile is it, open, as a daemon hands it to Prepare.
var (
	probePath string
	probeFile *os.File
)

func TestMain(m *testing.M) {
	Init(testHook)
	os.Exit(run(m))
}

// hookFlag, when it exists, makes testHook fail in the sandbox's init (which
// inherits no environment from the test, but still sees the host's files).
// It is named after this test binary (runc init runs with the same argv[0]),
// so that test binaries running at the same time do not trip each other.
var hookFlag = fmt.Sprintf("/tmp/tcc-sandbox-test-hook-fail-%08x", crc32.ChecksumIEEE([]byte(os.Args[0])))

func testHook() error {
	if _, err := os.Stat(hookFlag); err == nil {
		return errors.New("test hook refused")
	}
	return nil
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "tcc-sandbox-probe-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		probePath = filepath.Join(dir, "probe")
		cmd := exec.Command("go", "build", "-trimpath", "-o", probePath, "./testdata/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build probe: %v\n%s", err, out)
			return 1
		}
		// The probe's directory stays 0700 (root-only), like the daemon's
		// blob store; the file itself must be readable and executable by
		// the cell's uid.
		if err := os.Chmod(probePath, 0o555); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if probeFile, err = os.Open(probePath); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer probeFile.Close()
	}
	return m.Run()
}

// testSeccomp allows everything but a few syscalls, enough to check that a
// filter is installed; real profiles are tested at integration.
func testSeccomp() *configs.Seccomp {
	eperm := uint(unix.EPERM)
	var calls []*configs.Syscall
	for _, name := range []string{"reboot", "kexec_load", "init_module", "swapon"} {
		calls = append(calls, &configs.Syscall{Name: name, Action: configs.Errno, ErrnoRet: &eperm})
	}
	return &configs.Seccomp{DefaultAction: configs.Allow, Syscalls: calls}
}

// newManager returns a Manager with its own Root and cgroup parent, and
// checks when the test ends that they are empty.
func newManager(t testing.TB, userNS bool) *Manager {
	t.Helper()
	testutil.RequireRoot(t)
	// Not t.TempDir: its parents are 0700 and the sandbox's root in a
	// user namespace must be able to walk to its rootfs.
	root, err := os.MkdirTemp("", "tcc-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	parent := "/tcc-test-" + filepath.Base(root)
	m, err := New(Config{Root: root, CgroupParent: parent, NoUserNS: !userNS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A fresh Manager: m's sandboxes still alive are leftovers too.
		// m's lock on the cgroup parent goes first, as if its daemon died.
		m.lock.Close()
		fresh, err := New(m.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.lock.Close()
		removed, err := fresh.Sweep(context.Background())
		if err != nil {
			t.Errorf("final sweep: %v", err)
		}
		if len(removed) > 0 {
			t.Errorf("final sweep found leftovers: %q", removed)
		}
		// The cgroup parent itself, in every hierarchy.
		hs, _ := hierarchies()
		for _, h := range hs {
			_ = os.Remove(filepath.Join(h, parent))
		}
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove root: %v", err)
		}
	})
	return m
}

// probeSpec is a spec running the probe with the given arguments.
func probeSpec(id string, args ...string) Spec {
	return Spec{
		ID:         id,
		Files:      []File{{Path: "probe", Source: probeFile, Exec: true}},
		Entrypoint: "probe",
		Args:       args,
		Env:        []string{"HOSTPID=" + fmt.Sprint(os.Getpid())},
		Memory:     256 << 20,
		Pids:       64,
		CPU:        1,
		OpenFiles:  64,
		Seccomp:    testSeccomp(),
	}
}

// runSpec prepares, launches, waits for and destroys a sandbox, and
// returns its exit, stdout and stderr. The wipe must be clean.
func runSpec(t testing.TB, m *Manager, s Spec) (Exit, []byte, []byte) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if s.Stdout == nil {
		s.Stdout = &stdout
	}
	if s.Stderr == nil {
		s.Stderr = &stderr
	}
	ctx := context.Background()
	sb, err := m.Prepare(ctx, s)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer checkWipe(t, sb)
	if err := sb.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	exit, err := sb.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return exit, stdout.Bytes(), stderr.Bytes()
}

// openFile opens path for a File's Source until the test ends.
func openFile(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func checkWipe(t testing.TB, sb *Sandbox) {
	t.Helper()
	if r := sb.Destroy(); !r.Clean() {
		t.Errorf("Destroy: %v", r)
	}
}

// runProbe runs the probe's report mode and decodes the report.
func runProbe(t *testing.T, m *Manager, s Spec) probeReport {
	t.Helper()
	exit, out, errOut := runSpec(t, m, s)
	if exit != (Exit{}) {
		t.Fatalf("probe: %v, stderr:\n%s", exit, errOut)
	}
	var r probeReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("probe output: %v\n%s\nstderr:\n%s", err, out, errOut)
	}
	return r
}

// probeReport mirrors testdata/probe's Report.
type probeReport struct {
	Pid, Ppid      int
	UID, GID       int
	EUID, EGID     int
	Groups         []int
	Hostname       string
	CapEff, CapPrm uint64
	CapInh, CapBnd uint64
	CapAmb         uint64
	NoNewPrivs     int
	Seccomp        int
	Interfaces     []struct {
		Name  string
		Up    bool
		Addrs []string
	}
	Root             []string
	Dev              []string
	WriteRoot        string
	WriteCell        string
	WriteTmp         string
	TmpFill          string
	TmpFilled        int64
	TmpSize          int64
	HostPidVisible   string
	ProcPids         []int
	ProcEntries      int
	OpenFDs          []int
	Rlimits          map[string][2]uint64
	StdinLen         int
	DevNullWrite     string
	ExecTmp          string
	CgroupFile       string
	MountInfo        string
	SysExists        bool
	Mkdir            string
	ChrootEscape     string
	Setuid0          string
	DataFile         string
	DataFileExecPerm string
	Env              []string
	Args             []string
}

// openFDs lists this process's open file descriptors and what they are.
func openFDs(t testing.TB) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		var fd int
		fmt.Sscan(e.Name(), &fd)
		fds[fd] = target
	}
	return fds
}

// childPids lists the processes whose parent is this test process.
func childPids(t testing.TB) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	self := os.Getpid()
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		var pid, ppid int
		fmt.Sscan(e.Name(), &pid)
		if len(f) > 1 {
			fmt.Sscan(f[1], &ppid)
		}
		if ppid == self {
			out = append(out, pid)
		}
	}
	return out
}
