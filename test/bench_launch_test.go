package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// BenchmarkColdLaunch is the cold launch of a trivial cell — the sha256
// example on {"text":"abc"}: a fresh sandbox created, the cell run to its
// result, the sandbox wiped — in tccd, beside bubblewrap, crun and runc
// running the same static binary with the same input in fresh namespaces,
// measured in the same run. Peers that are not installed are skipped
// ("not installed"); none is required.
//
// Metrics, medians over b.N launches:
//   - tccd: e2e-ms (the API client's call: HTTP, admission, audit events,
//     gate, sandbox, verdict), sandbox-ms (inside tccd: create to wiped,
//     from its "sandbox timing" log), prepare-ms, wipe-ms;
//   - peers: e2e-ms (fork/exec of the tool to its exit).
func BenchmarkColdLaunch(b *testing.B) {
	medians := map[string]time.Duration{} // e2e medians by launcher
	defer printLaunchRatios(medians)
	input := []byte(`{"text":"abc"}`)
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

	b.Run("tccd", func(b *testing.B) {
		e := NewEnv(b)
		e.Start()
		e.Register("cells/examples/sha256", nil)
		c := e.Client()
		call := func() *outcome.Outcome {
			o, err := c.Run(context.Background(), api.RunRequest{Cell: "sha256", Input: input})
			if err != nil || o.Verdict != outcome.OK || !strings.Contains(string(o.Result), want) || !o.Wipe.Clean {
				b.Fatalf("run: %v %+v", err, o)
			}
			return o
		}
		for range 5 {
			call()
		}
		var e2e []time.Duration
		traces := map[string]bool{}
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			o := call()
			e2e = append(e2e, time.Since(start))
			traces[o.TraceID] = true
		}
		b.StopTimer()
		prepare, wipe, total := sandboxTimings(b, e, traces)
		medians["tccd"] = report(b, "e2e-ms", e2e)
		medians["tccd sandbox"] = report(b, "sandbox-ms", total)
		report(b, "prepare-ms", prepare)
		report(b, "wipe-ms", wipe)
	})

	// The peers run the same binary.
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "sha256"), mustRead(b, cellBinary(b, "cells/examples/sha256")), 0o755); err != nil {
		b.Fatal(err)
	}
	peer := func(name string, argv func(i int) []string, setup func(b *testing.B) (cleanup func())) {
		b.Run(name, func(b *testing.B) {
			if _, err := exec.LookPath(name); err != nil {
				b.Skipf("%s: not installed", name)
			}
			if setup != nil {
				defer setup(b)()
			}
			run := func(i int) {
				a := argv(i)
				cmd := exec.Command(a[0], a[1:]...)
				cmd.Stdin = strings.NewReader(string(input))
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), want) {
					b.Fatalf("%s: %v\n%s", strings.Join(a, " "), err, out)
				}
			}
			for i := range 3 {
				run(-1 - i)
			}
			var e2e []time.Duration
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				run(i)
				e2e = append(e2e, time.Since(start))
			}
			b.StopTimer()
			medians[name] = report(b, "e2e-ms", e2e)
		})
	}

	peer("bwrap", func(int) []string {
		return []string{"bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
			"--ro-bind", rootfs, "/cell", "--chdir", "/", "/cell/sha256"}
	}, nil)

	// crun and runc get an OCI bundle with the namespaces tccd makes (but
	// no user namespace or seccomp filter), a read-only root and a pids
	// limit, in cgroups under a parent of their own.
	parent := "/tcc-bench-" + randHex(4)
	ociBundle := func(b *testing.B, name string) string {
		bundle := filepath.Join(dir, name)
		if err := os.MkdirAll(bundle, 0o755); err != nil {
			b.Fatal(err)
		}
		cfg := map[string]any{
			"ociVersion": "1.0.2",
			"process": map[string]any{
				"terminal": false, "user": map[string]any{"uid": 1000, "gid": 1000},
				"args": []string{"/sha256"}, "env": []string{"PATH=/"}, "cwd": "/", "noNewPrivileges": true,
			},
			"root":   map[string]any{"path": rootfs, "readonly": true},
			"mounts": []map[string]any{{"destination": "/proc", "type": "proc", "source": "proc"}},
			"linux": map[string]any{
				"namespaces":  []map[string]string{{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}},
				"cgroupsPath": parent + "/" + name,
				"resources":   map[string]any{"pids": map[string]any{"limit": 8}},
			},
		}
		data, _ := json.Marshal(cfg)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return bundle
	}
	removeParent := func() {
		for _, h := range cgroupHierarchies() {
			d := filepath.Join(h, parent)
			subs, _ := filepath.Glob(filepath.Join(d, "*", "cgroup.procs"))
			for _, s := range subs {
				os.Remove(filepath.Dir(s))
			}
			os.Remove(d)
		}
	}
	defer removeParent()

	// crun (1.8) refuses a hybrid host whose cgroup2 has a controller
	// (hugetlb here): it runs in a mount namespace where cgroup2 is
	// unmounted, entered with nsenter, which adds one exec to its figure.
	var crunNS string
	peer("crun", func(i int) []string {
		bundle := filepath.Join(dir, "crun")
		args := []string{"crun", "--root", filepath.Join(dir, "crun-state"), "run", "--bundle", bundle, fmt.Sprintf("tcc-bench-%d", i+10)}
		if crunNS != "" {
			args = append([]string{"nsenter", "--mount=" + crunNS}, args...)
		}
		return args
	}, func(b *testing.B) func() {
		ociBundle(b, "crun")
		if _, err := os.Stat("/sys/fs/cgroup/unified"); err != nil {
			return func() {}
		}
		helper := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/unified && exec sleep 3600")
		if err := helper.Start(); err != nil {
			b.Skipf("crun: cannot make a mount namespace without cgroup2 for it: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		crunNS = fmt.Sprintf("/proc/%d/ns/mnt", helper.Process.Pid)
		b.Logf("crun runs through nsenter into a mount namespace without /sys/fs/cgroup/unified (hybrid cgroups)")
		return func() { helper.Process.Kill(); helper.Wait() }
	})

	peer("runc", func(i int) []string {
		return []string{"runc", "--root", filepath.Join(dir, "runc-state"), "run", "--bundle", filepath.Join(dir, "runc"), fmt.Sprintf("tcc-bench-%d", i+10)}
	}, func(b *testing.B) func() { ociBundle(b, "runc"); return func() {} })
}

// sandboxTimings reads the daemon's "sandbox timing" debug lines of the
// given calls.
func sandboxTimings(b *testing.B, e *Env, traces map[string]bool) (prepare, wipe, total []time.Duration) {
	for _, line := range strings.Split(string(mustRead(b, e.Log)), "\n") {
		if !strings.Contains(line, `msg="sandbox timing"`) {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		if !traces[f["trace_id"]] {
			continue
		}
		for _, x := range []struct {
			key string
			to  *[]time.Duration
		}{{"prepare", &prepare}, {"wipe", &wipe}, {"total", &total}} {
			if d, err := time.ParseDuration(f[x.key]); err == nil {
				*x.to = append(*x.to, d)
			}
		}
	}
	if len(total) != len(traces) {
		b.Errorf("found %d sandbox timing lines for %d calls (is the daemon at --log-level debug?)", len(total), len(traces))
	}
	return prepare, wipe, total
}

// printLaunchRatios prints the medians side by side, with tccd's as a
// multiple of each peer's, for the peers that ran.
func printLaunchRatios(m map[string]time.Duration) {
	t, ok := m["tccd"]
	if !ok {
		return
	}
	line := fmt.Sprintf("launch: tccd %.1f ms end to end (create→wiped %.1f ms)", ms(t), ms(m["tccd sandbox"]))
	for _, p := range []string{"runc", "crun", "bwrap"} {
		if d, ok := m[p]; ok && d > 0 {
			line += fmt.Sprintf("; %s %.1f ms (tccd ×%.1f)", p, ms(d), float64(t)/float64(d))
		} else {
			line += "; " + p + " not installed"
		}
	}
	fmt.Println(line)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report adds the median of ds, in milliseconds, as a metric, and returns
// it.
func report(b *testing.B, unit string, ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	b.ReportMetric(ms(med), unit)
	return med
}

// cellBinary builds a cell's static binary (once per run, shared with
// Env.Capsule) and returns its path.
func cellBinary(tb testing.TB, src string) string {
	tb.Helper()
	v, _ := cellBuilds.LoadOrStore(src, &cellBuild{})
	cb := v.(*cellBuild)
	cb.once.Do(func() {
		cb.path = filepath.Join(bin, "cells", strings.ReplaceAll(src, "/", "_"))
		cb.err = goBuild(cb.path, "./"+src, false)
	})
	if cb.err != nil {
		tb.Fatal(cb.err)
	}
	return cb.path
}
