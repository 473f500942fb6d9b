package monitor

import (
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

const nrGetppid = unix.SYS_GETPPID

func TestGetppidCount(t *testing.T) {
	for _, start := range []Start{StartAtExec, StartAtWatch} {
		for _, n := range []int{0, 1, 1000} {
			m := openMonitor(t, Options{Start: start})
			cg := newCgroup(t)
			w := watch(t, m, cg, nil)
			cg.run(t, "getppid", strconv.Itoa(n))
			c := closeWatch(t, w)
			if got := c.Syscalls[nrGetppid]; got != uint64(n) {
				t.Errorf("start %d, %d calls: counted %d getppid, want %d", start, n, got, n)
			}
			if c.Execs != 1 || c.Exits != 1 {
				t.Errorf("start %d: execs %d exits %d, want 1 and 1", start, c.Execs, c.Exits)
			}
			if c.Lost() {
				t.Errorf("start %d: lost events: %+v", start, c)
			}
			// The pairs are per task: every getppid but the first follows one.
			if n > 1 {
				if got := c.Pairs[[2]uint32{nrGetppid, nrGetppid}]; got != uint64(n-1) {
					t.Errorf("start %d: getppid→getppid %d, want %d", start, got, n-1)
				}
			}
		}
	}
}

func TestStartAtExecSkipsSetup(t *testing.T) {
	// The pre-exec child of os/exec runs in the cgroup (clone3 with
	// CLONE_INTO_CGROUP) and makes syscalls before execve: StartAtWatch
	// counts them, StartAtExec does not.
	counts := map[Start]Counters{}
	for _, start := range []Start{StartAtExec, StartAtWatch} {
		m := openMonitor(t, Options{Start: start})
		cg := newCgroup(t)
		w := watch(t, m, cg, nil)
		cg.run(t, "exit")
		counts[start] = closeWatch(t, w)
	}
	exec, watch := counts[StartAtExec], counts[StartAtWatch]
	if exec.Syscalls[unix.SYS_EXECVE] != 0 {
		t.Errorf("StartAtExec counted %d execve, want 0 (counting starts inside it)", exec.Syscalls[unix.SYS_EXECVE])
	}
	if watch.Syscalls[unix.SYS_EXECVE] != 1 {
		t.Errorf("StartAtWatch counted %d execve, want 1", watch.Syscalls[unix.SYS_EXECVE])
	}
	if exec.TotalSyscalls >= watch.TotalSyscalls {
		t.Errorf("StartAtExec counted %d syscalls, StartAtWatch %d: want fewer", exec.TotalSyscalls, watch.TotalSyscalls)
	}
	var starts uint64
	for p, n := range exec.Pairs {
		if p[0] == PairStart {
			starts += n
		}
	}
	// One per task that made a syscall: a runtime thread can be created and
	// killed by exit_group before its first.
	if starts < 1 || starts > 1+exec.Threads {
		t.Errorf("StartAtExec: %d pairs start a task, want 1 to %d (tasks)", starts, 1+exec.Threads)
	}
}

// TestOutput checks what the monitor counts and samples of a cell's
// output: the bytes the calls wrote (their return values, whatever length
// they asked for) and a sample that covers all of them.
func TestOutput(t *testing.T) {
	m := openMonitor(t, Options{})
	for _, tc := range []struct {
		args     []string
		written  uint64  // exactly
		sampled  uint64  // at least
		min, max float64 // entropy
	}{
		{[]string{"random", "65536"}, 65536, 1024, 7.5, 8},
		{[]string{"writev", "65536"}, 65536, 1024, 7.5, 8},
		{[]string{"repeat", "65536"}, 65536, 1024, 0, 0.01},
		// 8 bytes of 'A' in the first 8 iovecs, 32 KiB of random after:
		// the sample is of the whole, not of the first iovecs.
		{[]string{"writev-tail"}, 8 + 8*4096, 1024, 7, 8},
		// A failed write of 2^62 bytes writes nothing.
		{[]string{"badwrite"}, 3, 3, 0, 2},
		// Asked for 1 GiB, wrote the one page that was there: its bytes
		// are the sample.
		{[]string{"partial"}, uint64(os.Getpagesize()), 1024, 7, 8},
	} {
		cg := newCgroup(t)
		w := watch(t, m, cg, nil)
		out, _ := cg.run(t, tc.args...)
		c := closeWatch(t, w)
		t.Logf("%v: entropy %.3f bits/byte from %d sampled of %d written", tc.args, c.Entropy(), c.BytesSampled, c.BytesWritten)
		if uint64(len(out)) != tc.written || c.BytesWritten != tc.written {
			t.Errorf("%v: %d bytes written, %d read from the pipe; want %d", tc.args, c.BytesWritten, len(out), tc.written)
		}
		if c.BytesSampled < tc.sampled || c.BytesSampled > c.BytesWritten || c.Unsampled != 0 {
			t.Errorf("%v: sampled %d of %d bytes (unsampled %d), want at least %d and none unsampled", tc.args, c.BytesSampled, c.BytesWritten, c.Unsampled, tc.sampled)
		}
		if e := c.Entropy(); e < tc.min || e > tc.max {
			t.Errorf("%v: entropy %.3f bits/byte, want %.2f–%.2f", tc.args, e, tc.min, tc.max)
		}
	}
}

func TestProcessEvents(t *testing.T) {
	m := openMonitor(t, Options{})
	cg := newCgroup(t)
	w := watch(t, m, cg, nil)
	cg.run(t, "forkexec")
	c := closeWatch(t, w)
	// The cell's exec and its child's; every forked process exits, and so
	// does the cell. (The Go runtime forks once more: os/exec probes
	// clone(CLONE_PIDFD) with a child that exits at once.)
	if c.Forks < 1 || c.Execs != 2 || c.Exits != c.Forks+1 {
		t.Errorf("forks %d execs %d exits %d, want ≥1, 2, forks+1", c.Forks, c.Execs, c.Exits)
	}
	if c.Threads == 0 {
		t.Errorf("threads 0, want the Go runtime's")
	}
}

func TestSeccompKill(t *testing.T) {
	m := openMonitor(t, Options{})
	for _, tc := range []struct {
		mode  string
		sig   syscall.Signal // that ends the process
		kills []SeccompKill
	}{
		// SECCOMP_RET_KILL_PROCESS
		{"seccomp", syscall.SIGSYS, []SeccompKill{{Nr: nrGetppid, Name: "getppid"}}},
		// SECCOMP_RET_KILL_THREAD: the process lives on
		{"seccomp-thread", 0, []SeccompKill{{Nr: nrGetppid, Name: "getppid"}}},
		// kill(2) with SIGSYS is no seccomp kill
		{"sigsys", syscall.SIGSYS, nil},
		// int 0x80 with eax 20: ia32 getpid, not x86_64's writev
		{"seccomp-ia32", syscall.SIGSYS, []SeccompKill{{Nr: 20, Name: "ia32 syscall 20", Compat: true}}},
		// Two threads killed one after the other, the first on the second
		// CPU: named in the order they died.
		{"seccomp-order", 0, []SeccompKill{{Nr: nrGetppid, Name: "getppid"}, {Nr: unix.SYS_GETUID, Name: "getuid"}}},
	} {
		if tc.mode == "seccomp-order" && runtime.NumCPU() < 2 {
			t.Logf("%s: skipped: needs two CPUs", tc.mode)
			continue
		}
		cg := newCgroup(t)
		w := watch(t, m, cg, nil)
		if _, sig := cg.run(t, tc.mode); sig != tc.sig {
			t.Fatalf("cellprobe %s: signal %v, want %v", tc.mode, sig, tc.sig)
		}
		c := closeWatch(t, w)
		// Only the offending thread counts, not the others a kill takes down.
		if c.Kills != uint64(len(tc.kills)) || !slices.Equal(c.SeccompKills, tc.kills) {
			t.Errorf("%s: kills %d %v, want %d %v", tc.mode, c.Kills, c.SeccompKills, len(tc.kills), tc.kills)
		}
		if tc.kills == nil {
			continue
		}
		if got := c.Syscalls[tc.kills[0].Nr]; got != 0 && !tc.kills[0].Compat {
			t.Errorf("%s: counted %d %s, want 0: seccomp runs before sys_enter", tc.mode, got, tc.kills[0].Name)
		}
		if d := Score(c, nil); !d.Deviant() || !strings.Contains(strings.Join(d.Reasons, ";"), tc.kills[0].Name) {
			t.Errorf("%s: Score = %+v, want deviant naming %s", tc.mode, d, tc.kills[0].Name)
		}
	}
}

func TestUnwatchedCgroupNotCounted(t *testing.T) {
	m := openMonitor(t, Options{Start: StartAtWatch})
	watched, other := newCgroup(t), newCgroup(t)
	w := watch(t, m, watched, nil)
	other.run(t, "getppid", "100")
	other.run(t, "forkexec")
	c := closeWatch(t, w)
	if c.TotalSyscalls != 0 || len(c.Syscalls) != 0 || len(c.Pairs) != 0 || c.Execs != 0 || c.Forks != 0 || c.BytesWritten != 0 {
		t.Errorf("watched cgroup counted another cgroup's events: %+v", c)
	}
}

func TestNovelPairs(t *testing.T) {
	m := openMonitor(t, Options{})
	cg := newCgroup(t)

	w := watch(t, m, cg, nil)
	cg.run(t, "exit")
	base, err := Learn(closeWatch(t, w))
	if err != nil {
		t.Fatal(err)
	}

	w = watch(t, m, cg, base)
	cg.run(t, "getppid", "10")
	select {
	case <-w.Notify():
	case <-time.After(5 * time.Second):
		t.Error("no notification of the novel pair")
	}
	c := closeWatch(t, w)
	if c.NovelPairs == 0 {
		t.Errorf("kernel counted no novel pair, want the ones with getppid")
	}
	f := Summarize(c, base)
	if uint64(f.NovelPairCount) < c.NovelPairs {
		t.Errorf("Summarize found %d novel pairs, kernel %d", f.NovelPairCount, c.NovelPairs)
	}
	if !slices.Contains(f.NovelPairs, "getppid→getppid") {
		t.Errorf("novel pairs %v lack getppid→getppid", f.NovelPairs)
	}
	d := Score(c, base)
	if !d.Deviant() || !slices.Contains(d.NovelSyscalls, "getppid") {
		t.Errorf("Score = %+v, want deviant with novel syscall getppid", d)
	}

	// An empty baseline: every pair is novel, in the kernel's count too.
	empty, _ := Learn()
	w = watch(t, m, cg, empty)
	cg.run(t, "getppid", "10")
	c = closeWatch(t, w)
	if c.NovelPairs != uint64(len(c.Pairs)) || len(c.Pairs) == 0 {
		t.Errorf("empty baseline: kernel counted %d novel pairs of %d", c.NovelPairs, len(c.Pairs))
	}
}

func TestCloseWipes(t *testing.T) {
	// One cell slot: every watch reuses the slot the last one wiped.
	m := openMonitor(t, Options{MaxCells: 1})
	cg := newCgroup(t)
	w := watch(t, m, cg, nil)
	cg.run(t, "random", "4096")
	base, err := Learn(closeWatch(t, w))
	if err != nil {
		t.Fatal(err)
	}
	// Again with a baseline, so the known-pairs map holds entries too.
	w = watch(t, m, cg, base)
	cg.run(t, "random", "4096")
	if _, err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := w.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot after Close: %v, want ErrClosed", err)
	}
	// Every map, read independently of Close's own check.
	if left, err := m.tr.Residue(cg.id); err != nil || len(left) != 0 {
		t.Errorf("Residue after Close = %v, %v; want none", left, err)
	}
	// A new watch, of the same cgroup or another, starts from zero in the
	// reused slot.
	for _, cg := range []*testCgroup{cg, newCgroup(t)} {
		w = watch(t, m, cg, nil)
		c, err := w.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if c.TotalSyscalls != 0 || len(c.Pairs) != 0 || c.BytesWritten != 0 || c.Bytes != ([256]uint64{}) || c.Execs != 0 {
			t.Errorf("fresh watch not zero: %+v", c)
		}
		closeWatch(t, w)
	}
}

func TestNoBPFObjectsLeft(t *testing.T) {
	m := openMonitor(t, Options{})
	cg := newCgroup(t)
	w := watch(t, m, cg, nil)
	ids, err := m.tr.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.Programs) != 5 || len(ids.Links) != 5 || len(ids.Maps) != 9 {
		t.Fatalf("IDs = %+v, want 5 programs, 5 links, 9 maps", ids)
	}
	for _, id := range ids.Links {
		if !linkExists(t, id) {
			t.Errorf("link %d not listed by the kernel while a cell is watched", id)
		}
	}
	cg.run(t, "exit")
	// w is left open: Monitor.Close must clean it up.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Errorf("Watch.Close after Monitor.Close: %v", err)
	}
	for _, id := range ids.Links {
		if linkExists(t, id) {
			t.Errorf("link %d left after Close", id)
		}
	}
	// Programs and maps are freed after an RCU grace period.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, id := range ids.Programs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				left = append(left, "program "+strconv.Itoa(int(id)))
			}
		}
		for _, id := range ids.Maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				left = append(left, "map "+strconv.Itoa(int(id)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after Close: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkExists reports whether the kernel lists a link with this id.
func linkExists(t testing.TB, id link.ID) bool {
	t.Helper()
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		if it.ID == id {
			return true
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}

// TestIdleDetach checks that the programs are attached only while a cell
// is watched and for IdleDetach after: the host's syscalls stop running
// them, and a Watch attaches them again, before it returns, whether it
// comes after the detach or races with it.
func TestIdleDetach(t *testing.T) {
	const grace = 50 * time.Millisecond
	m := openMonitor(t, Options{IdleDetach: grace})
	cg := newCgroup(t)

	w := watch(t, m, cg, nil)
	ids, err := m.tr.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.Links) != 5 {
		t.Fatalf("links while watched: %v, want 5", ids.Links)
	}
	if runs := hostRuns(t, m, 1000); runs < 1000 {
		t.Errorf("tcc_sys_enter ran %d times for 1000 host getppid while a cell is watched, want at least 1000", runs)
	}
	time.Sleep(3 * grace)
	if !m.tr.Attached() {
		t.Fatalf("detached while a cell is watched")
	}
	closeWatch(t, w)

	waitDetached(t, m)
	for _, id := range ids.Links {
		if linkExists(t, id) {
			t.Errorf("link %d still listed by the kernel after the idle detach", id)
		}
	}
	if runs := hostRuns(t, m, 1000); runs != 0 {
		t.Errorf("tcc_sys_enter ran %d times for 1000 host getppid after the idle detach, want 0", runs)
	}

	// A Watch made when the idle timer fires, before it detaches: the hook
	// runs at the timer that getppid1000's Close arms (none is pending
	// now: the last one detached).
	raced := make(chan error, 1)
	var wr *Watch
	m.mu.Lock()
	m.beforeDetach = func() {
		m.mu.Lock()
		m.beforeDetach = nil
		m.mu.Unlock()
		var err error
		wr, err = m.Watch(cg.id, nil)
		raced <- err
	}
	m.mu.Unlock()

	// A Watch after the detach attaches again and misses nothing.
	getppid1000(t, m, cg, "after the detach")

	select {
	case err := <-raced:
		if err != nil {
			t.Fatalf("Watch racing the idle detach: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle timer did not fire within 10 s of the last Close")
	}
	time.Sleep(3 * grace) // the detach it raced has had every chance
	if !m.tr.Attached() {
		t.Fatalf("a Watch that raced the idle detach returned, and the programs are detached")
	}
	cg.run(t, "getppid", "1000")
	if c := closeWatch(t, wr); c.Syscalls[nrGetppid] != 1000 || c.Lost() {
		t.Errorf("Watch racing the idle detach: counted %d getppid (lost %v), want 1000", c.Syscalls[nrGetppid], c.Lost())
	}
	waitDetached(t, m)

	// A Watch that fails leaves the programs to the idle detach.
	big := &Baseline{Pairs: make([][2]uint32, DefaultPairsPerCell+1)}
	if _, err := m.Watch(cg.id, big); err == nil {
		t.Fatal("Watch with a baseline over the pair budget succeeded")
	}
	waitDetached(t, m)
}

// TestIdleDetachRace watches cells from two goroutines with an idle
// detach that fires soon after neither is watched, pausing between
// watches for about as long as a run takes: every Watch must count its
// cell exactly, whether the programs were attached, detached, or being
// detached when it came.
func TestIdleDetachRace(t *testing.T) {
	const grace = time.Millisecond
	m := openMonitor(t, Options{IdleDetach: grace})
	var mu sync.Mutex
	links := map[link.ID]bool{}
	for i := range 2 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			cg := newCgroup(t)
			for range 10 {
				w := watch(t, m, cg, nil)
				ids, err := m.tr.IDs()
				if err != nil || len(ids.Links) != 5 {
					t.Fatalf("links when Watch returned: %v, %v; want 5", ids.Links, err)
				}
				mu.Lock()
				links[ids.Links[0]] = true
				mu.Unlock()
				cg.run(t, "getppid", "100")
				if c := closeWatch(t, w); c.Syscalls[nrGetppid] != 100 || c.Execs != 1 || c.Lost() {
					t.Fatalf("counted %d getppid, %d execs (lost %v), want 100 and 1", c.Syscalls[nrGetppid], c.Execs, c.Lost())
				}
				time.Sleep(rand.N(20 * grace))
			}
		})
	}
	t.Cleanup(func() { t.Logf("20 watches attached the programs %d times", len(links)) })
}

// getppid1000 watches cg while it makes 1000 getppid and checks the
// counts are exact.
func getppid1000(t *testing.T, m *Monitor, cg *testCgroup, when string) {
	t.Helper()
	getppid1000Watched(t, m, cg, watch(t, m, cg, nil), when)
}

// getppid1000Watched is getppid1000 with cg watched by w.
func getppid1000Watched(t *testing.T, m *Monitor, cg *testCgroup, w *Watch, when string) {
	t.Helper()
	if !m.tr.Attached() {
		t.Fatalf("%s: Watch returned with the programs detached", when)
	}
	cg.run(t, "getppid", "1000")
	c := closeWatch(t, w)
	if c.Syscalls[nrGetppid] != 1000 || c.Pairs[[2]uint32{nrGetppid, nrGetppid}] != 999 || c.Execs != 1 || c.Exits != 1 || c.Lost() {
		t.Errorf("%s: getppid %d, getppid→getppid %d, execs %d, exits %d, lost %v; want 1000, 999, 1, 1, false",
			when, c.Syscalls[nrGetppid], c.Pairs[[2]uint32{nrGetppid, nrGetppid}], c.Execs, c.Exits, c.Lost())
	}
}

// waitDetached waits for the idle detach.
func waitDetached(t testing.TB, m *Monitor) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.tr.Attached() {
		if time.Now().After(deadline) {
			t.Fatalf("programs still attached 10 s after the last watch closed (idle detach %v)", m.opts.IdleDetach)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hostRuns counts the runs of tcc_sys_enter, on any CPU, while this
// process (in no watched cell) makes n getppid, with BPF run statistics
// enabled meanwhile.
func hostRuns(t *testing.T, m *Monitor, n int) uint64 {
	t.Helper()
	st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatalf("enable BPF stats: %v", err)
	}
	defer st.Close()
	runs := func() uint64 {
		s, err := m.tr.ProgramStats()
		if err != nil {
			t.Fatal(err)
		}
		return s["tcc_sys_enter"].RunCount
	}
	before := runs()
	for range n {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
	return runs() - before
}

// TestWatchAgainWhileClosing watches a cgroup again while its last watch
// is closing, between the removal of its cell and the end of its Close:
// the old watch must not take the new one with it (which would also let
// the idle detach leave the new watch blind).
func TestWatchAgainWhileClosing(t *testing.T) {
	const grace = 10 * time.Millisecond
	m := openMonitor(t, Options{IdleDetach: grace})
	cg := newCgroup(t)
	old := watch(t, m, cg, nil)

	// Hold m.mu so that old's Close stops just before taking it, and
	// watch again (as Watch does, with m.mu held) once its cell is gone.
	m.mu.Lock()
	closed := make(chan error, 1)
	go func() {
		_, err := old.Close()
		closed <- err
	}()
	var w *Watch
	for w == nil {
		var err error
		w, err = m.addWatch(cg.id, nil)
		if errors.Is(err, ErrWatched) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			m.mu.Unlock()
			t.Fatalf("Watch while the last watch closes: %v", err)
		}
	}
	m.mu.Unlock()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}

	m.mu.Lock()
	got := m.watches[cg.id]
	m.mu.Unlock()
	if got != w {
		t.Fatalf("the closed watch took the new watch of its cgroup out of the monitor")
	}
	time.Sleep(5 * grace)
	getppid1000Watched(t, m, cg, w, "watched again while the last watch closed")
}
