package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/exeseal"

	"github.com/trustcells/tcc/internal/testutil"
)

// BenchmarkPhases runs whole cycles of a trivial cell (the probe exiting 0),
// alternating a sandbox with and one without a user namespace so that both
// see the same machine, and reports the median and 90th percentile of each
// phase: prepare (create+start: runc init up to the exec fifo), launch+wait
// (exec of the cell to its reaping), destroy (wipe and check). An op is one
// cycle of each.
func BenchmarkPhases(b *testing.B) {
	type phases struct{ prep, run, wipe []time.Duration }
	ms := make([]*Manager, len(modes))
	res := make([]phases, len(modes))
	for i, mode := range modes {
		ms[i] = newManager(b, mode.userNS)
	}
	ctx := context.Background()
	var out bytes.Buffer
	for n := 0; b.Loop(); n++ {
		for i, m := range ms {
			s := probeSpec(fmt.Sprintf("tcc-bench-%d", n), "exit", "0")
			s.Stdout, s.Stderr = &out, &out
			t0 := time.Now()
			sb, err := m.Prepare(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := sb.Launch(); err != nil {
				b.Fatal(err)
			}
			if exit, err := sb.Wait(ctx); err != nil || exit != (Exit{}) {
				b.Fatalf("%v %v: %s", exit, err, out.Bytes())
			}
			t2 := time.Now()
			if r := sb.Destroy(); !r.Clean() {
				b.Fatal(r)
			}
			t3 := time.Now()
			r := &res[i]
			r.prep, r.run, r.wipe = append(r.prep, t1.Sub(t0)), append(r.run, t2.Sub(t1)), append(r.wipe, t3.Sub(t2))
		}
	}
	for i, mode := range modes {
		report(b, mode.name+"-prepare", res[i].prep)
		report(b, mode.name+"-launch+wait", res[i].run)
		report(b, mode.name+"-destroy", res[i].wipe)
	}
}

// BenchmarkPrepareAfterIdle measures Prepare after the machine has been
// idle for half a second: the first cgroup attach after an idle spell waits
// for an RCU grace period (see docs/notes/002-sandbox.md).
func BenchmarkPrepareAfterIdle(b *testing.B) {
	m := newManager(b, true)
	ctx := context.Background()
	var prep []time.Duration

	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		time.Sleep(500 * time.Millisecond)
		b.StartTimer()
		t0 := time.Now()
		sb, err := m.Prepare(ctx, probeSpec(fmt.Sprintf("tcc-idle-%d", i), "exit", "0"))
		if err != nil {
			b.Fatal(err)
		}
		prep = append(prep, time.Since(t0))
		b.StopTimer()
		if r := sb.Destroy(); !r.Clean() {
			b.Fatal(r)
		}
		b.StartTimer()
	}
	report(b, "prepare", prep)
}

func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(ds[len(ds)/2]), name+"-p50-ms")
	b.ReportMetric(ms(ds[len(ds)*9/10]), name+"-p90-ms")
}

// BenchmarkExeseal measures what libcontainer does to the daemon's binary
// for every sandbox it starts (CVE-2019-5736): a read-only overlayfs view
// of /proc/self/exe (used when overlayfs and the new mount API work, as
// here), or else a sealed memfd copy, whose cost grows with the binary.
func BenchmarkExeseal(b *testing.B) {
	testutil.RequireRoot(b)
	b.Run("overlay", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			f, err := exeseal.CloneSelfExe(dir)
			if err != nil {
				b.Fatal(err)
			}
			if exeseal.IsCloned(f) {
				b.Fatal("expected the overlayfs path, got a memfd")
			}
			f.Close()
		}
	})
	for _, size := range []int64{10 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("memfd-%dMiB", size>>20), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bin")
			if err := os.WriteFile(path, bytes.Repeat([]byte{0x90}, int(size)), 0o755); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				src, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				f, err := exeseal.CloneBinary(src, size, "bench", b.TempDir())
				src.Close()
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
