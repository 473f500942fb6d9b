package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// monitorReport is the part of outcome.Monitor (and call.end's monitor
// field) these tests read.
type monitorReport struct {
	Available   bool   `json:"available"`
	Reason      string `json:"reason"`
	Baseline    bool   `json:"baseline"`
	Fingerprint *struct {
		Syscalls         uint64 `json:"syscalls"`
		DistinctSyscalls int    `json:"distinct_syscalls"`
		Top              []struct {
			Name  string `json:"name"`
			Count uint64 `json:"count"`
		} `json:"top"`
		NovelPairCount int     `json:"novel_pair_count"`
		Entropy        float64 `json:"entropy_bits_per_byte"`
		BytesWritten   uint64  `json:"bytes_written"`
		BytesSampled   uint64  `json:"bytes_sampled"`
		Execs          uint64  `json:"execs"`
		CPUNS          uint64  `json:"cpu_ns"`
		PeakMemory     uint64  `json:"peak_memory"`
		SeccompKills   []struct {
			Name string `json:"name"`
		} `json:"seccomp_kills"`
		Lost bool `json:"lost"`
	} `json:"fingerprint"`
	Deviation *struct {
		Score         float64  `json:"score"`
		NovelSyscalls []string `json:"novel_syscalls"`
		Reasons       []string `json:"reasons"`
	} `json:"deviation"`
	Action string `json:"action"`
}

func (m *monitorReport) count(name string) uint64 {
	if m.Fingerprint == nil {
		return 0
	}
	for _, s := range m.Fingerprint.Top {
		if s.Name == name {
			return s.Count
		}
	}
	return 0
}

func monReport(t *testing.T, o *outcome.Outcome) *monitorReport {
	t.Helper()
	var m monitorReport
	if err := json.Unmarshal(o.Monitor, &m); err != nil {
		t.Fatalf("outcome.monitor %s: %v", o.Monitor, err)
	}
	return &m
}

func monCall(t *testing.T, e *Env, cell, input string) (*outcome.Outcome, *monitorReport) {
	t.Helper()
	o, err := e.Client().Run(context.Background(), api.RunRequest{Cell: cell, Input: json.RawMessage(input)})
	if err != nil {
		t.Fatalf("run %s %s: %v", cell, input, err)
	}
	return o, monReport(t, o)
}

// profileOf reads `tccctl cell profile --json`.
type profileOf struct {
	Learned        bool `json:"learned"`
	ProbationRuns  int  `json:"probation_runs"`
	Runs           int  `json:"runs"`
	UnrecordedRuns int  `json:"unrecorded_runs"`
	Syscalls       []struct {
		Name  string `json:"name"`
		Total uint64 `json:"total"`
	} `json:"syscalls"`
}

func monProfile(t *testing.T, e *Env, ref string) *profileOf {
	t.Helper()
	var p profileOf
	if err := json.Unmarshal([]byte(e.MustCtl("cell", "profile", ref, "--json")), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func (p *profileOf) total(name string) uint64 {
	for _, s := range p.Syscalls {
		if s.Name == name {
			return s.Total
		}
	}
	return 0
}

// requireMonitor skips (fails under CI) when the monitor cannot run here.
func requireMonitor(t *testing.T, e *Env) {
	t.Helper()
	s, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Monitor.Available {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the eBPF monitor is unavailable under CI: %s", s.Monitor.Reason)
		}
		t.Skipf("the eBPF monitor is unavailable here: %s", s.Monitor.Reason)
	}
}

// TestMonitor drives the behaviour monitor through the real tccd: one
// daemon, the two monitor test cells registered once (their probation runs
// teach the baselines), then restarts of the same state with other flags.
func TestMonitor(t *testing.T) {
	e := NewEnv(t)
	e.Start()
	requireMonitor(t, e)
	e.Register("test/cells/hostile-monitor", nil) // policy log, entropy band 0–7
	e.Register("test/cells/hostile-halt", nil)    // policy halt
	// No examples, so no baseline: only what is wrong for any cell counts.
	e.Register("test/cells/hostile-monitor", func(y string) string {
		y = monRename(t, y, "hostile-nobase")
		return y[:strings.Index(y, "\nexamples:")+1]
	})

	t.Run("probation baseline", func(t *testing.T) {
		// Examples, each run 3 times: getppid-100 (the guard's getppid and
		// 100), text-to-stderr and burst-quiet (the guard's only).
		p := monProfile(t, e, "hostile-halt")
		if !p.Learned || p.ProbationRuns != 9 || p.Runs != 9 {
			t.Errorf("profile: learned %v, probation runs %d, runs %d; want true, 9, 9", p.Learned, p.ProbationRuns, p.Runs)
		}
		if got, want := p.total("getppid"), uint64(3*101+3+3); got != want {
			t.Errorf("profile: getppid total %d, want %d", got, want)
		}
		if got := p.total("getrusage"); got != 0 {
			t.Errorf("profile: getrusage %d before any burst, want 0", got)
		}
		// The baseline was stored with the registration, in its batch,
		// and the cell.register event attests it.
		_, raw, err := e.Client().Profile(context.Background(), "hostile-halt")
		if err != nil {
			t.Fatal(err)
		}
		var prof struct{ Baseline json.RawMessage }
		var canon bytes.Buffer // the control API indents its answers
		if err := json.Unmarshal(raw, &prof); err != nil || json.Compact(&canon, prof.Baseline) != nil {
			t.Fatalf("profile %s: %v", raw, err)
		}
		sum := sha256.Sum256(canon.Bytes())
		reg := monEvents(t, e, "hostile-halt", "cell.register")
		if len(reg) != 1 || reg[0].Attrs["baseline_sha256"] != hex.EncodeToString(sum[:]) || reg[0].Attrs["baseline_runs"] != "9" {
			t.Errorf("cell.register events %+v: want one attesting the baseline (sha256 %x, 9 runs)", reg, sum)
		}
	})

	t.Run("getppid histogram", func(t *testing.T) {
		// (The fingerprint lists the top 10 syscalls: n must make the list.)
		for _, n := range []int{1000, 4321} {
			o, m := monCall(t, e, "hostile-monitor", `{"attack":"getppid-n","n":`+strconv.Itoa(n)+`}`)
			if o.Verdict != outcome.OK || !m.Available || m.Fingerprint == nil {
				t.Fatalf("getppid-n %d: %s %s, monitor %s", n, o.Verdict, o.Message, o.Monitor)
			}
			// n from the workload and one from the guard, exactly.
			if got := m.count("getppid"); got != uint64(n+1) {
				t.Errorf("getppid-n %d: fingerprint counts %d getppid, want %d (n + the guard's one)", n, got, n+1)
			}
			if f := m.Fingerprint; f.Execs != 1 || f.CPUNS == 0 || f.PeakMemory == 0 || f.Lost {
				t.Errorf("getppid-n %d: fingerprint %+v: want 1 exec, CPU and memory, nothing lost", n, f)
			}
		}
	})

	t.Run("entropy", func(t *testing.T) {
		for _, tc := range []struct {
			mode     string
			min, max float64
		}{{"random", 7.5, 8}, {"repeat", 0, 0.1}} {
			o, m := monCall(t, e, "hostile-monitor", `{"attack":"entropy","mode":"`+tc.mode+`","n":65536}`)
			if o.Verdict != outcome.OK || m.Fingerprint == nil {
				t.Fatalf("entropy %s: %s %s", tc.mode, o.Verdict, o.Message)
			}
			f := m.Fingerprint
			t.Logf("entropy %s: %.3f bits/byte from %d sampled of %d written", tc.mode, f.Entropy, f.BytesSampled, f.BytesWritten)
			if f.Entropy < tc.min || f.Entropy > tc.max || f.BytesWritten < 65536 {
				t.Errorf("entropy %s: %.3f bits/byte, %d bytes written; want %.1f–%.1f, ≥ 65536", tc.mode, f.Entropy, f.BytesWritten, tc.min, tc.max)
			}
			// hostile-monitor declares 0–7 bits/byte: random output is logged.
			outside := m.Deviation != nil && strings.Contains(strings.Join(m.Deviation.Reasons, ";"), "declared band")
			if outside != (tc.mode == "random") {
				t.Errorf("entropy %s: deviation %+v; want one naming the declared band only for random", tc.mode, m.Deviation)
			}
		}
	})

	t.Run("examples stay quiet", func(t *testing.T) {
		// Under halt, ordinary runs like the examples must not be stopped.
		for _, in := range []string{`{"attack":"getppid-n","n":100}`, `{"attack":"entropy","mode":"text","n":4096}`, `{"attack":"burst"}`} {
			o, m := monCall(t, e, "hostile-halt", in)
			if o.Verdict != outcome.OK || m.Deviation != nil && m.Deviation.Score >= 1 {
				t.Errorf("%s: %s %s; deviation %+v", in, o.Verdict, o.Message, m.Deviation)
			}
		}
	})

	t.Run("burst halted", func(t *testing.T) {
		before := monProfile(t, e, "hostile-halt").Runs
		// The burst would run 10 s; wall is 30 s.
		o, m := monCall(t, e, "hostile-halt", `{"attack":"burst","trigger":true,"seconds":10}`)
		if o.Verdict != outcome.Halted || len(o.Result) != 0 {
			t.Fatalf("burst under halt: verdict %s (%s), result %s; want halted, no result", o.Verdict, o.Message, o.Result)
		}
		if m.Deviation == nil || m.Action != "halted" || !slices.Contains(m.Deviation.NovelSyscalls, "getrusage") {
			t.Errorf("burst under halt: action %q, deviation %+v; want halted naming getrusage", m.Action, m.Deviation)
		}
		// Latency: the burst's syscalls before the kill, at the burst's own
		// rate (measured below under log) — independent of how long the
		// sandbox and the Go runtime took to start.
		burst := m.count("getrusage") + m.count("statfs")
		rate := monBurstRate(t, e)
		latency := time.Duration(float64(burst) / rate * float64(time.Second))
		t.Logf("halted after %d burst syscalls (%.0f/s): ≈ %v after the burst began; launch to exit %v", burst, rate, latency, time.Duration(o.Duration))
		if latency > 50*time.Millisecond {
			t.Errorf("the burst ran ≈ %v before the kill (%d syscalls at %.0f/s), want ≤ 50ms", latency, burst, rate)
		}
		if after := monProfile(t, e, "hostile-halt").Runs; after != before {
			t.Errorf("a halted run taught the baseline: runs %d → %d", before, after)
		}
	})

	t.Run("deviation after exit halted", func(t *testing.T) {
		// 4 KiB of random bytes in one write, then exit: a few ms, less
		// than the first full score (the syscalls are the text example's,
		// so no novel pair wakes the monitor). Outside the declared band
		// 0–7 bits/byte, it is seen only in the final counters; under halt
		// that withholds the result all the same.
		before := monProfile(t, e, "hostile-halt").Runs
		o, m := monCall(t, e, "hostile-halt", `{"attack":"entropy","mode":"random","n":4096}`)
		t.Logf("%s in %v: %s", o.Verdict, time.Duration(o.Duration), o.Message)
		if o.Verdict != outcome.Halted || len(o.Result) != 0 {
			t.Fatalf("random output under halt: verdict %s (%s), result %s; want halted, no result", o.Verdict, o.Message, o.Result)
		}
		if m.Deviation == nil || !strings.Contains(strings.Join(m.Deviation.Reasons, ";"), "declared band") {
			t.Errorf("deviation %+v, want one naming the declared band", m.Deviation)
		}
		if after := monProfile(t, e, "hostile-halt").Runs; after != before {
			t.Errorf("a halted run taught the baseline: runs %d → %d", before, after)
		}
	})

	t.Run("burst logged", func(t *testing.T) {
		o, m := monCall(t, e, "hostile-monitor", `{"attack":"burst","trigger":true,"seconds":0.2}`)
		if o.Verdict != outcome.OK || len(o.Result) == 0 {
			t.Fatalf("burst under log: %s %s; want ok with its result", o.Verdict, o.Message)
		}
		if m.Deviation == nil || m.Action != "logged" || !slices.Contains(m.Deviation.NovelSyscalls, "statfs") {
			t.Errorf("burst under log: action %q, deviation %+v; want logged naming statfs", m.Action, m.Deviation)
		}
	})

	t.Run("burst throttled", func(t *testing.T) {
		e.Register("test/cells/hostile-monitor", func(y string) string {
			return strings.Replace(monRename(t, y, "hostile-throttle"), "  policy: log\n", "  policy: throttle\n", 1)
		})
		o, m := monCall(t, e, "hostile-throttle", `{"attack":"burst","trigger":true,"seconds":0.3}`)
		if o.Verdict != outcome.OK || m.Deviation == nil || !strings.HasPrefix(m.Action, "throttled to 0.1 cores") {
			t.Errorf("burst under throttle: %s %s, action %q; want ok, throttled to 0.1 cores", o.Verdict, o.Message, m.Action)
		}
	})

	t.Run("seccomp violation named", func(t *testing.T) {
		o, m := monCall(t, e, "hostile-monitor", `{"attack":"undeclared-syscall","syscall":"sysinfo"}`)
		if o.Verdict != outcome.Violation || o.Violation == nil || o.Violation.Syscall != "sysinfo" {
			t.Fatalf("undeclared sysinfo: verdict %s violation %+v (%s); want violation naming sysinfo", o.Verdict, o.Violation, o.Message)
		}
		if f := m.Fingerprint; f == nil || len(f.SeccompKills) != 1 || f.SeccompKills[0].Name != "sysinfo" {
			t.Errorf("fingerprint seccomp kills %+v, want [sysinfo]", m.Fingerprint)
		}
	})

	t.Run("probation refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name, old, new, want string
		}{
			{"undeclared syscall", "{attack: burst}\n    output: {attack: burst, blocked: false, errno: \"\", detail: \"ordinary run: ok\", count: 0}",
				"{attack: undeclared-syscall, syscall: sysinfo}", "calling sysinfo"},
			{"output mismatch", "detail: called getppid 100 times, count: 100}", "detail: called getppid 100 times, count: 101}", `example "getppid-100"`},
		} {
			path := e.Signed("test/cells/hostile-monitor", func(y string) string {
				if !strings.Contains(y, tc.old) {
					t.Fatalf("%s: cell.yaml lacks %q", tc.name, tc.old)
				}
				return monRename(t, strings.Replace(y, tc.old, tc.new, 1), "hostile-probation")
			})
			out, code := e.Ctl("cell", "register", path)
			t.Logf("%s: %s", tc.name, out)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("%s: register exit %d: %s; want a refusal naming %s", tc.name, code, out, tc.want)
			}
		}
	})

	t.Run("advise", func(t *testing.T) {
		// Unsigned, unregistered; one more example that bursts and one that
		// calls sysinfo, which the manifest does not grant.
		dir := e.Capsule("test/cells/hostile-monitor", func(y string) string {
			return y + "  - name: burst-short\n    input: {attack: burst, trigger: true, seconds: 0.01}\n" +
				"  - name: sysinfo\n    input: {attack: undeclared-syscall, syscall: sysinfo}\n"
		})
		stdout, stderr, code := e.CtlSplit(nil, "cell", "advise", dir)
		if code != 0 {
			t.Fatalf("advise: exit %d: %s%s", code, stdout, stderr)
		}
		t.Logf("advise:\n%s%s", stdout, stderr)
		want := "syscalls:\n  groups: []\n  extra: [\"getppid\", \"getrusage\", \"statfs\", \"sysinfo\"]\n"
		if stdout != want {
			t.Errorf("advise printed\n%s\nwant\n%s\n(stderr: %s)", stdout, want, stderr)
		}
		if !strings.Contains(stderr, "lacks: sysinfo") {
			t.Errorf("advise does not say cell.yaml lacks sysinfo:\n%s", stderr)
		}
	})

	// Refinement: a good run is merged in memory, recorded at shutdown.
	_, _ = monCall(t, e, "hostile-halt", `{"attack":"getppid-n","n":100}`)
	p := monProfile(t, e, "hostile-halt")
	if p.UnrecordedRuns == 0 || p.Runs <= 9 {
		t.Errorf("after good runs: runs %d, unrecorded %d; want > 9 and > 0", p.Runs, p.UnrecordedRuns)
	}
	e.Stop()

	t.Run("lost events halt", func(t *testing.T) {
		// The same state with 8 pairs per cell: every run overflows.
		e.args = []string{"--monitor-pairs-per-cell", "8"}
		e.Start()
		defer e.Stop()
		if q := monProfile(t, e, "hostile-halt"); q.Runs != p.Runs || q.UnrecordedRuns != 0 {
			t.Errorf("after a restart: runs %d (unrecorded %d), want %d recorded at shutdown", q.Runs, q.UnrecordedRuns, p.Runs)
		}
		// Policy log, no baseline: fail closed all the same. (A cell with
		// a baseline larger than the budget is not watched at all: internal.)
		// The run is a few ms: the loss may be seen by a poll, or only in
		// the final counters after the exit; halted either way.
		o, m := monCall(t, e, "hostile-nobase", `{"attack":"burst"}`)
		if o.Verdict != outcome.Halted || len(o.Result) != 0 || m.Fingerprint == nil || !m.Fingerprint.Lost || !strings.Contains(o.Message, "lost events") {
			t.Errorf("with a tiny pair budget: %s %q, result %s, fingerprint %+v; want halted for lost events, no result", o.Verdict, o.Message, o.Result, m.Fingerprint)
		}
	})

	t.Run("idle detach", func(t *testing.T) {
		// The programs are attached only while cells run and for the idle
		// detach after; a call after the detach attaches them again and
		// counts exactly.
		e.args = []string{"--monitor-idle-detach", "100ms"}
		e.Start()
		defer e.Stop()
		for i, n := range []int{1000, 10} {
			waitNoLinks(t, e)
			o, m := monCall(t, e, "hostile-monitor", `{"attack":"getppid-n","n":`+strconv.Itoa(n)+`}`)
			if o.Verdict != outcome.OK || m.count("getppid") != uint64(n+1) || m.Fingerprint.Lost {
				t.Errorf("call %d after the idle detach: %s %s, monitor %s; want ok, %d getppid, nothing lost", i+1, o.Verdict, o.Message, o.Monitor, n+1)
			}
		}
		waitNoLinks(t, e)
	})

	t.Run("no monitor", func(t *testing.T) {
		e.args = []string{"--no-monitor"}
		e.Start()
		defer e.Stop()
		s, err := e.Client().Status(context.Background())
		if err != nil || s.Monitor.Available || s.Monitor.Reason == "" {
			t.Errorf("status with --no-monitor: %+v %v; want unavailable with a reason", s, err)
		}
		// Seccomp, namespaces and limits still hold; each call says why it
		// has no fingerprint.
		o, m := monCall(t, e, "hostile-halt", `{"attack":"getppid-n","n":10}`)
		if o.Verdict != outcome.OK || m.Available || m.Reason == "" || m.Fingerprint != nil {
			t.Errorf("call without the monitor: %s, monitor %s; want ok, available false with a reason", o.Verdict, o.Monitor)
		}
		if o, _ := monCall(t, e, "hostile-monitor", `{"attack":"undeclared-syscall","syscall":"sysinfo"}`); o.Verdict != outcome.Violation {
			t.Errorf("undeclared syscall without the monitor: %s, want violation", o.Verdict)
		}
	})
}

// monEvent is the part of a ledger event these tests read.
type monEvent struct {
	Seq   uint64            `json:"seq"`
	Type  string            `json:"type"`
	Attrs map[string]string `json:"attrs"`
}

// monEvents returns the events of one type about a cell.
func monEvents(t *testing.T, e *Env, cell, typ string) []monEvent {
	t.Helper()
	rc, err := e.Client().LedgerEvents(context.Background(), api.EventQuery{Last: 100, Cell: cell, Types: []string{typ}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var evs []monEvent
	dec := json.NewDecoder(rc)
	for dec.More() {
		var ev monEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// monRename gives a hostile cell.yaml another name (the entrypoint stays).
func monRename(t *testing.T, y, name string) string {
	t.Helper()
	const old = "\nname: hostile-monitor\n"
	if !strings.Contains(y, old) {
		t.Fatalf("cell.yaml lacks %q", old)
	}
	return strings.Replace(y, old, "\nname: "+name+"\n", 1)
}

// monBurstRate measures how many burst syscalls per second hostile-monitor
// makes, from a short burst under log policy.
func monBurstRate(t *testing.T, e *Env) float64 {
	t.Helper()
	const secs = 0.3
	o, _ := monCall(t, e, "hostile-monitor", `{"attack":"burst","trigger":true,"seconds":0.3}`)
	var r struct {
		Count int64 `json:"count"`
	}
	if o.Verdict != outcome.OK || json.Unmarshal(o.Result, &r) != nil || r.Count == 0 {
		t.Fatalf("burst under log: %s %s %s", o.Verdict, o.Message, o.Result)
	}
	// uname, getrusage, statfs: the count is of all three; two are counted
	// in the halted run.
	return float64(r.Count) * 2 / 3 / secs
}

// waitNoLinks waits until the daemon holds no BPF link: its monitor's idle
// detach.
func waitNoLinks(t *testing.T, e *Env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", e.cmd.Process.Pid, fd.Name())); target == "anon_inode:bpf_link" {
				n++
			}
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tccd still holds %d BPF links 10 s after its last call", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
