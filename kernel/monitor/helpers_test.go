package monitor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/internal/testutil"
)

// cgroup2Root returns where cgroup2 is mounted: /sys/fs/cgroup/unified on
// a hybrid host, /sys/fs/cgroup on a pure v2 host.
func cgroup2Root(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// 36 25 0:31 / /sys/fs/cgroup/unified rw,… shared:9 - cgroup2 cgroup2 rw,…
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(pre); len(fields) >= 5 {
			return fields[4]
		}
	}
	testutil.Unavailable(t, "no cgroup2 mount")
	return ""
}

// testCgroup is a cgroup2 directory made for one test.
type testCgroup struct {
	path string
	id   uint64
	fd   int
}

func newCgroup(t testing.TB) *testCgroup {
	t.Helper()
	var rnd [4]byte
	rand.Read(rnd[:])
	path := filepath.Join(cgroup2Root(t), "tcc-test-monitor-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		// A reaped child can linger in cgroup.procs for a moment.
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := unix.Rmdir(path)
			if err == nil || errors.Is(err, unix.ENOENT) {
				return
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				t.Errorf("remove cgroup %s: %v", path, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return &testCgroup{path: path, id: st.Ino, fd: fd}
}

var (
	probeOnce sync.Once
	probeDir  string
	probePath string
	probeErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if probeDir != "" {
		os.RemoveAll(probeDir)
	}
	os.Exit(code)
}

// cellprobe builds testdata/cellprobe as a static binary, once per test run.
func cellprobe(t testing.TB) string {
	t.Helper()
	probeOnce.Do(func() {
		var err error
		if probeDir, err = os.MkdirTemp("", "tcc-test-cellprobe-"); err != nil {
			probeErr = err
			return
		}
		probePath = filepath.Join(probeDir, "cellprobe")
		cmd := exec.Command("go", "build", "-trimpath", "-o", probePath, "./testdata/cellprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = errors.New("build cellprobe: " + err.Error() + ": " + string(out))
		}
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probePath
}

// run runs cellprobe with args inside cg and returns its stdout and the
// signal that killed it, if one did.
func (cg *testCgroup) run(t testing.TB, args ...string) ([]byte, syscall.Signal) {
	t.Helper()
	// A probe stuck in the kernel must fail the test, not hang it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cellprobe(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return stdout.Bytes(), ws.Signal()
		}
	}
	if err != nil {
		t.Fatalf("cellprobe %v: %v: %s", args, err, stderr.String())
	}
	return stdout.Bytes(), 0
}

func openMonitor(t testing.TB, opts Options) *Monitor {
	t.Helper()
	testutil.RequireRoot(t)
	if err := Probe(); err != nil {
		testutil.Unavailable(t, "%v", err)
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Monitor.Close: %v", err)
		}
	})
	return m
}

func watch(t testing.TB, m *Monitor, cg *testCgroup, b *Baseline) *Watch {
	t.Helper()
	w, err := m.Watch(cg.id, b)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return w
}

func closeWatch(t testing.TB, w *Watch) Counters {
	t.Helper()
	c, err := w.Close()
	if err != nil {
		t.Fatalf("Watch.Close: %v", err)
	}
	return c
}
