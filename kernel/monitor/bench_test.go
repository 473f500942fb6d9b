package monitor

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkSyscall measures what the programs add to a syscall: getppid
// (and a 1 KiB write to /dev/null, which is sampled at its exit) with no
// programs loaded (none), loaded but detached after the idle grace period
// (idle), from a host process outside any watched cgroup while a cell is
// watched (host), and from a watched cell (this process, moved into a
// watched cgroup); then again with BPF run time statistics enabled
// (+stats), where enter-ns/run and exit-ns/run are the kernel's own run
// time of tcc_sys_enter and tcc_sys_exit per run (BPF_STATS_RUN_TIME), over
// every process of the machine while the benchmark ran; bpf-ns/op charges
// all of both programs' run time to the benchmark's calls (an upper bound,
// close when the benchmark makes nearly all the syscalls).
//
// In between, what coming and going costs: attach and detach (the five
// links), and a Watch that has to attach them (watch-first, after an idle
// detach) against one that finds them attached (watch-warm). Their ns/op
// is the operation alone; the set-up each iteration needs (a wait, a
// Close) is left out of it.
func BenchmarkSyscall(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	buf := make([]byte, 1024)
	getppid := func() { syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0) }
	write := func() {
		syscall.RawSyscall(syscall.SYS_WRITE, null.Fd(), uintptr(unsafePointer(buf)), uintptr(len(buf)))
	}
	loop := func(b *testing.B, call func(), m *Monitor) {
		var before map[string]ebpf.ProgramStats
		if m != nil {
			before = syscallStats(b, m)
		}
		b.ResetTimer()
		for b.Loop() {
			call()
		}
		b.StopTimer()
		if m != nil {
			var total time.Duration
			for name, after := range syscallStats(b, m) {
				d := after.Runtime - before[name].Runtime
				total += d
				if runs := after.RunCount - before[name].RunCount; runs > 0 {
					b.ReportMetric(float64(d)/float64(runs), strings.TrimPrefix(name, "tcc_sys_")+"-ns/run")
				}
			}
			b.ReportMetric(float64(total)/float64(b.N), "bpf-ns/op")
		}
	}

	calls := []struct {
		name string
		call func()
	}{{"getppid", getppid}, {"write1k", write}}
	for _, c := range calls {
		b.Run("none/"+c.name, func(b *testing.B) { loop(b, c.call, nil) })
	}

	m := openMonitor(b, Options{Start: StartAtWatch, IdleDetach: 10 * time.Millisecond})
	waitDetached(b, m)
	for _, c := range calls {
		b.Run("idle/"+c.name, func(b *testing.B) { loop(b, c.call, nil) })
	}

	cg := newCgroup(b)
	comeAndGo(b, m, cg)

	w := watch(b, m, cg, nil)
	defer closeWatch(b, w)
	// Run time statistics cost time of their own: measure with and without.
	for _, stats := range []bool{false, true} {
		var mm *Monitor
		suffix := ""
		if stats {
			st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
			if err != nil {
				b.Fatalf("enable BPF stats: %v", err)
			}
			defer st.Close()
			mm, suffix = m, "+stats"
		}
		for _, c := range calls {
			b.Run("host"+suffix+"/"+c.name, func(b *testing.B) { loop(b, c.call, mm) })
		}
		restore := moveSelf(b, cg.path)
		for _, c := range calls {
			b.Run("cell"+suffix+"/"+c.name, func(b *testing.B) { loop(b, c.call, mm) })
		}
		restore()
	}
}

// comeAndGo benchmarks attaching and detaching the programs, and a Watch
// with and without the attach. No cell is watched when it is called.
//
// An attach within an RCU grace period of the last detach waits for the
// grace period to end (the kernel's tracepoint_add_func, on a
// tracepoint's 1→0→1 transition): ≈ 10 ms here. The idle detach comes
// after seconds without a watch, so attach and watch-first wait settle
// after their detach, as an idle Monitor has.
func comeAndGo(b *testing.B, m *Monitor, cg *testCgroup) {
	const settle = 50 * time.Millisecond
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	var w *Watch
	closeLast := func() {
		if w != nil {
			closeWatch(b, w)
			w = nil
		}
	}
	watchCg := func() { w = watch(b, m, cg, nil) }
	b.Run("attach", func(b *testing.B) {
		timedOp(b, func() { must(m.tr.Detach()); time.Sleep(settle) }, func() { must(m.tr.Attach()) })
	})
	b.Run("detach", func(b *testing.B) {
		timedOp(b, func() { must(m.tr.Attach()) }, func() { must(m.tr.Detach()) })
	})
	b.Run("watch-first", func(b *testing.B) {
		timedOp(b, func() { closeLast(); must(m.tr.Detach()); time.Sleep(settle) }, watchCg)
	})
	// Another cell keeps them attached.
	keep := watch(b, m, newCgroup(b), nil)
	b.Run("watch-warm", func(b *testing.B) { timedOp(b, closeLast, watchCg) })
	closeLast()
	closeWatch(b, keep)
}

// timedOp runs prepare and op b.N times and reports as ns/op the time of
// op alone. (Stopping the timer around prepare instead would leave b.N to
// be sized by op alone, and a long prepare would make the run last
// minutes.)
func timedOp(b *testing.B, prepare, op func()) {
	var d time.Duration
	for b.Loop() {
		prepare()
		t := time.Now()
		op()
		d += time.Since(t)
	}
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "ns/op")
}

// syscallStats returns the run statistics of the syscall programs.
func syscallStats(b *testing.B, m *Monitor) map[string]ebpf.ProgramStats {
	st, err := m.tr.ProgramStats()
	if err != nil {
		b.Fatal(err)
	}
	return map[string]ebpf.ProgramStats{"tcc_sys_enter": st["tcc_sys_enter"], "tcc_sys_exit": st["tcc_sys_exit"]}
}

// moveSelf moves this process into the cgroup2 directory dir and returns
// a function that moves it back.
func moveSelf(b *testing.B, dir string) func() {
	b.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var orig string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if path, ok := strings.CutPrefix(s.Text(), "0::"); ok {
			orig = filepath.Join(cgroup2Root(b), path)
		}
	}
	if orig == "" {
		b.Fatal("no cgroup2 line in /proc/self/cgroup")
	}
	move := func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			b.Fatalf("move into %s: %v", dir, err)
		}
	}
	move(dir)
	return func() { move(orig) }
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// BenchmarkRead measures reading a watched cell that ran a program: Poll
// (scalar counters, for a 10 ms loop), Snapshot (everything) and Residue.
func BenchmarkRead(b *testing.B) {
	m := openMonitor(b, Options{})
	cg := newCgroup(b)
	w := watch(b, m, cg, nil)
	defer closeWatch(b, w)
	cg.run(b, "forkexec")
	c, err := w.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("cell has %d syscalls, %d distinct pairs", c.TotalSyscalls, len(c.Pairs))
	for _, r := range []struct {
		name string
		read func() error
	}{
		{"poll", func() error { _, err := w.Poll(); return err }},
		{"snapshot", func() error { _, err := w.Snapshot(); return err }},
		{"residue", func() error { _, err := m.tr.Residue(cg.id + 1); return err }},
	} {
		b.Run(r.name, func(b *testing.B) {
			for b.Loop() {
				if err := r.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
