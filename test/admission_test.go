package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// Issue 3: admission bounds what runs at once and what waits, and says
// "busy" past that; and a thousand calls leave the daemon as they found it.

// TestAdmissionBusy fills the only sandbox slot and the only queue place:
// a third call is refused at once with HTTP 503, code busy and a message
// that says what to do, while the first two complete; nothing leaks.
func TestAdmissionBusy(t *testing.T) {
	t.Parallel()
	e := NewEnv(t, "--max-sandboxes", "1", "--max-queue", "1")
	e.Start()
	e.Register("test/cells/hostile", nil)
	const slow = `{"attack":"busy-loop","seconds":1.5}`

	type res struct {
		o   *outcome.Outcome
		err error
	}
	results := make(chan res, 2)
	call := func() {
		o, err := e.Client().Run(context.Background(), api.RunRequest{Cell: "hostile", Input: json.RawMessage(slow)})
		results <- res{o, err}
	}
	go call()
	waitRunning(t, e, 1)
	go call()
	waitQueued(t, e, 1)

	before := ledgerSize(t, e)
	status, ae := postRun(t, e, "hostile", slow)
	if status != http.StatusServiceUnavailable || ae.Code != api.CodeBusy || !strings.Contains(ae.Message, "busy: 1 sandboxes running and 1 calls queued; retry later") {
		t.Errorf("third call: HTTP %d, code %q, %q; want 503 busy", status, ae.Code, ae.Message)
	}
	out, code := e.Ctl("run", "hostile", "--input", slow)
	if code != exitFailure || !strings.Contains(out, "retry later") {
		t.Errorf("tccctl run while busy: exit %d, %q", code, out)
	}
	if after := ledgerSize(t, e); after != before {
		t.Errorf("busy refusals appended %d ledger events", after-before)
	}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Errorf("an admitted call failed: %v", r.err)
			continue
		}
		if res := result(t, r.o); res.Attack != "busy-loop" || !r.o.Wipe.Clean {
			t.Errorf("admitted call: %+v, wipe %+v", res, r.o.Wipe)
		}
	}
	waitRunning(t, e, 0)
	noCellProcesses(t, e)
	sandboxDirsEmpty(t, e)
}

func waitQueued(t *testing.T, e *Env, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := e.Client().Status(context.Background())
		if err == nil && s.Sandboxes.Queued == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not report %d queued calls within 20s (%+v, %v)", n, s, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNoLeaks makes 1,000 calls of sha256 back to back (four callers at a
// time) and compares the daemon's open files, the mounts and cgroups under
// its state and cgroup parent, its child processes and the sandbox state
// before and after.
func TestNoLeaks(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("cells/examples/sha256", nil)
	pid := daemonPID(t, e)
	// Every connection of the test's own clients is closed before each
	// snapshot (the daemon keeps idle ones up to its IdleTimeout), so
	// that only the daemon's own descriptors are compared.
	calls := func(n, workers int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := e.Client()
				defer c.HTTPClient().CloseIdleConnections()
				for i := w; i < n; i += workers {
					o, err := c.Run(context.Background(), api.RunRequest{Cell: "sha256", Input: json.RawMessage(fmt.Sprintf(`{"text":"call %d"}`, i))})
					if err == nil && (o.Verdict != outcome.OK || !o.Wipe.Clean) {
						err = fmt.Errorf("call %d: verdict %s (%s), wipe %+v", i, o.Verdict, o.Message, o.Wipe)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	calls(20, 2) // warm up: first-use files, the monitor, the runtime's pools
	time.Sleep(200 * time.Millisecond)
	before := snapshot(t, e, pid)
	n := 1000
	if s := os.Getenv("TCC_TEST_LEAK_CALLS"); s != "" {
		fmt.Sscan(s, &n)
	}
	took := calls(n, 4)
	time.Sleep(200 * time.Millisecond) // let connections close
	after := snapshot(t, e, pid)
	t.Logf("%d calls in %v (%.0f calls/s); daemon before: %s; after: %s", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), before, after)
	if d := before.diff(after); d != "" {
		t.Errorf("the daemon changed over %d calls:\n%s", n, d)
	}
}

// daemonSnapshot is what a leak would change.
type daemonSnapshot struct {
	fds       []string // targets of the daemon's fds, pebble's files left out
	dbFiles   int      // fds on pebble's files: they come and go with compactions
	mounts    int      // mounts under the env's directory
	cgroups   int      // cgroups under the env's cgroup parent, all hierarchies
	children  []string // the daemon's child processes
	cellProcs int      // processes in the env's cgroups
	sandboxes int      // entries in state/sandboxes/{state,rootfs}
	threads   string
	rss       string
}

func (s daemonSnapshot) String() string {
	return fmt.Sprintf("%d fds (+%d ledger db), %d mounts, %d cgroups, %d children, %d cell processes, %d sandbox dirs, %s threads, RSS %s",
		len(s.fds), s.dbFiles, s.mounts, s.cgroups, len(s.children), s.cellProcs, s.sandboxes, s.threads, s.rss)
}

func (s daemonSnapshot) diff(o daemonSnapshot) string {
	var b strings.Builder
	if a, z := strings.Join(s.fds, "\n    "), strings.Join(o.fds, "\n    "); a != z {
		fmt.Fprintf(&b, "  open files before:\n    %s\n  after:\n    %s\n", a, z)
	}
	for _, c := range []struct {
		what string
		a, z int
	}{{"mounts", s.mounts, o.mounts}, {"cgroups", s.cgroups, o.cgroups}, {"cell processes", s.cellProcs, o.cellProcs}, {"sandbox dirs", s.sandboxes, o.sandboxes}} {
		if c.a != c.z {
			fmt.Fprintf(&b, "  %s: %d before, %d after\n", c.what, c.a, c.z)
		}
	}
	if a, z := strings.Join(s.children, ","), strings.Join(o.children, ","); a != z {
		fmt.Fprintf(&b, "  child processes: %q before, %q after\n", a, z)
	}
	return b.String()
}

func snapshot(t *testing.T, e *Env, pid int) daemonSnapshot {
	t.Helper()
	var s daemonSnapshot
	proc := fmt.Sprintf("/proc/%d", pid)
	ents, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(e.State, "ledger", "db")
	for _, ent := range ents {
		target, err := os.Readlink(filepath.Join(proc, "fd", ent.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if strings.HasPrefix(target, db) {
			s.dbFiles++
			continue
		}
		// Socket and pipe inode numbers differ run to run; their kinds
		// and count do not.
		if i := strings.Index(target, ":["); i > 0 {
			target = target[:i]
		}
		s.fds = append(s.fds, target)
	}
	sort.Strings(s.fds)
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	s.mounts = strings.Count(string(mi), e.Dir)
	for _, h := range cgroupHierarchies() {
		filepath.WalkDir(filepath.Join(h, e.Cgroup), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != filepath.Join(h, e.Cgroup) {
				s.cgroups++
			}
			return nil
		})
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		st, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 && f[1] == fmt.Sprint(pid) {
			s.children = append(s.children, filepath.Base(p))
		}
	}
	s.cellProcs = len(cellProcesses(e))
	for _, d := range []string{"state", "rootfs"} {
		ents, _ := os.ReadDir(filepath.Join(e.State, "sandboxes", d))
		s.sandboxes += len(ents)
	}
	status, _ := os.ReadFile(filepath.Join(proc, "status"))
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Threads":
			s.threads = strings.TrimSpace(v)
		case "VmRSS":
			s.rss = strings.Join(strings.Fields(v), " ")
		}
	}
	return s
}
