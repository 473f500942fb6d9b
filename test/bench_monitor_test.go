package test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ciliumebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// heavyCalls is the getppid count of the syscall-heavy cell run.
const heavyCalls = 100_000

// heavyCell registers hostile-monitor with its getppid example raised to
// heavyCalls, so that the heavy run is what its baseline knows.
func heavyCell(e *Env) {
	e.Register("test/cells/hostile-monitor", func(y string) string {
		y = strings.Replace(y, "{attack: getppid-n, n: 100}", fmt.Sprintf("{attack: getppid-n, n: %d}", heavyCalls), 1)
		return strings.Replace(y, "detail: called getppid 100 times, count: 100}", fmt.Sprintf("detail: called getppid %d times, count: %d}", heavyCalls, heavyCalls), 1)
	})
}

func runHeavy(b *testing.B, c *api.Client) *outcome.Outcome {
	o, err := c.Run(context.Background(), api.RunRequest{Cell: "hostile-monitor", Input: json.RawMessage(fmt.Sprintf(`{"attack":"getppid-n","n":%d}`, heavyCalls))})
	if err != nil {
		b.Fatal(err)
	}
	if o.Verdict != outcome.OK {
		b.Fatalf("heavy run: %s: %s", o.Verdict, o.Message)
	}
	return o
}

// BenchmarkMonitorOverhead measures what the eBPF monitor costs, through
// two real daemons, one with --no-monitor:
//
//   - cell/monitor-{on,off}: a cell making heavyCalls getppid, launch to
//     exit (the outcome's duration: sandbox set-up and wipe excluded);
//     cell-ms is its mean, ns/syscall that divided by the calls (the
//     monitored daemon's programs detached during the monitor-off runs);
//   - host/...: getppid in this (unwatched) process, per syscall: before
//     the monitor's programs are loaded (only the --no-monitor daemon
//     runs), with the monitor loaded but idle (no call for longer than its
//     idle detach, 2 s: the programs are detached), and while a watched
//     cell runs (attached).
//
// Both are CPU time (the cell's cgroup, this thread), not wall time. The
// cost of the attach that a first Watch after an idle spell pays (under
// 1.5 ms) is below the noise of a call's end-to-end time here: it is
// measured alone by kernel/monitor's BenchmarkSyscall/watch-first.
//
// The slowdowns are printed at the end.
func BenchmarkMonitorOverhead(b *testing.B) {
	off := NewEnv(b, "--no-monitor")
	off.Start()
	heavyCell(off)

	// Thread CPU time, not wall time: the machine is shared, and being
	// preempted is not what the programs cost.
	host := func(b *testing.B) float64 {
		const batch = 10_000
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU(b)
		for b.Loop() {
			for range batch {
				syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
			}
		}
		ns := float64(threadCPU(b)-start) / float64(b.N*batch)
		b.ReportMetric(ns, "cpu-ns/syscall")
		return ns
	}
	var hostNone, hostIdle, hostBusy, cellOn, cellOff float64
	others := sysEnterLinks(b)
	b.Run("host/no-programs", func(b *testing.B) { hostNone = host(b) })

	on := NewEnv(b)
	on.Start()
	if s, err := on.Client().Status(context.Background()); err != nil || !s.Monitor.Available {
		b.Skipf("monitor unavailable: %v %+v", err, s)
	}
	heavyCell(on)

	// The cell's cgroup CPU time (user + system): its wall time on a
	// shared machine is mostly other people's load.
	cell := func(c *api.Client, dst *float64) func(*testing.B) {
		return func(b *testing.B) {
			var wall, cpu time.Duration
			for b.Loop() {
				o := runHeavy(b, c)
				wall += time.Duration(o.Duration)
				cpu += time.Duration(o.CPU)
			}
			b.ReportMetric(float64(wall.Microseconds())/1000/float64(b.N), "wall-ms")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*heavyCalls), "cpu-ns/syscall")
			*dst = float64(cpu.Microseconds()) / 1000 / float64(b.N)
		}
	}
	// The off daemon's cell must not pay the on daemon's programs either.
	waitDetached(b, others)
	b.Run("cell/monitor-off", cell(off.Client(), &cellOff))
	b.Run("cell/monitor-on", cell(on.Client(), &cellOn))

	waitDetached(b, others)
	b.Run("host/programs-idle", func(b *testing.B) { hostIdle = host(b) })

	// A watched cell runs (over and over) while the host loop does.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			// Cancelled at the end; its 30 s wall deadline comes later.
			_, _ = on.Client().Run(ctx, api.RunRequest{Cell: "hostile-monitor", Input: json.RawMessage(`{"attack":"getppid-n","n":100000000}`)})
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the cell start
	b.Run("host/cell-running", func(b *testing.B) { hostBusy = host(b) })
	cancel()
	wg.Wait()

	if cellOff > 0 && hostNone > 0 {
		// Printed, not logged: a parent benchmark's log is not shown.
		fmt.Printf("monitor: syscall-heavy cell (%d getppid): %.1f ms CPU with the monitor, %.1f ms without: %+.0f%%\n",
			heavyCalls, cellOn, cellOff, 100*(cellOn/cellOff-1))
		fmt.Printf("monitor: host getppid: %.0f ns before the monitor was loaded, %.0f ns with it idle and detached (%+.0f ns), %.0f ns while a watched cell runs (%+.0f ns)\n",
			hostNone, hostIdle, hostIdle-hostNone, hostBusy, hostBusy-hostNone)
		if others > 0 {
			fmt.Printf("monitor: NOTE %d other tccd monitor(s) had their programs attached: the host figures are not against a machine without programs\n", others)
		}
	}
}

func threadCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
}

// waitDetached waits until no more tcc_sys_enter programs are attached
// than the others before the benchmark: the monitored daemon's idle
// detach.
func waitDetached(b *testing.B, others int) {
	deadline := time.Now().Add(10 * time.Second)
	for n := sysEnterLinks(b); n > others; n = sysEnterLinks(b) {
		if time.Now().After(deadline) {
			fmt.Printf("monitor: NOTE %d tcc_sys_enter programs still attached 10 s after the last call, %d before the benchmark: other tccds are busy, the figures that follow are not clean\n", n, others)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sysEnterLinks counts the attached tcc_sys_enter programs on the machine
// (other monitored tccds, while they watch a cell: their programs slow
// every host syscall too).
func sysEnterLinks(b *testing.B) int {
	n := 0
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		p, err := ciliumebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		if pi, err := p.Info(); err == nil && pi.Name == "tcc_sys_enter" {
			n++
		}
		p.Close()
	}
	if err := it.Err(); err != nil {
		b.Fatalf("list BPF links: %v", err)
	}
	return n
}
