package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/test/cells/attack"
)

// Issue 3: every verdict the Trust Kernel can reach, through tccctl run
// --json, with its message, its exit code (6) and a clean wipe; input
// refused before any sandbox; the wipe on every exit path (success, crash,
// timeout, cancel, daemon stop, daemon crash and the orphan sweep).

// TestVerdicts drives the hostile cells into each verdict.
func TestVerdicts(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("test/cells/hostile", nil)
	e.Register("test/cells/hostile-seccomp", nil)
	// A copy with a 1 s wall clock, so the timeout costs 1 s.
	e.Register("test/cells/hostile", rename("hostile-wall", "  wall: 5s", "  wall: 1s"))

	tests := []struct {
		name, cell, input string
		verdict           outcome.Verdict
		message           string // regexp the message must match
		check             func(t *testing.T, o *outcome.Outcome)
	}{
		{
			// A deviation the monitor logs (policy log) is noted, and is no
			// concern of this test.
			"ok", "hostile", `{"attack":"pids"}`, outcome.OK, `^(|cell hostile deviated from its baseline \(logged\))$`,
			func(t *testing.T, o *outcome.Outcome) {
				if r := result(t, o); !r.Blocked || r.Count != 1 {
					t.Errorf("pids result %+v", r)
				}
			},
		},
		{
			"fork bomb stopped by the pids limit", "hostile", `{"attack":"fork-bomb"}`, outcome.PidsLimit,
			`^cell hostile hit its process limit \(limits\.pids 16\) and failed$`,
			func(t *testing.T, o *outcome.Outcome) {
				m := regexp.MustCompile(`fork-bomb: started (\d+) processes, then: .*resource temporarily unavailable`).FindStringSubmatch(o.Stderr)
				if m == nil {
					// The Go runtime may die first, failing to make a thread.
					if !strings.Contains(o.Stderr, "failed to create new OS thread") {
						t.Fatalf("stderr tail says neither how many processes started nor why it failed:\n%s", o.Stderr)
					}
					return
				}
				if n, _ := strconv.Atoi(m[1]); n < 1 || n > 16 {
					t.Errorf("fork bomb started %d helper processes; the limit is 16 tasks", n)
				}
			},
		},
		{
			"memory bomb stopped by the memory limit", "hostile", `{"attack":"memory-bomb"}`, outcome.OOM,
			`^cell hostile was killed at its memory limit \(limits\.memory 64MiB\)$`,
			func(t *testing.T, o *outcome.Outcome) {
				// The charge that trips the limit may pass it by a page or
				// so before the OOM kill.
				if o.PeakMemory > 64<<20+64<<10 || o.PeakMemory < 32<<20 {
					t.Errorf("peak memory %d bytes; want near the 64 MiB limit, never past it by more than a few pages", o.PeakMemory)
				}
				if o.Signal != "SIGKILL" {
					t.Errorf("signal %q, want SIGKILL", o.Signal)
				}
			},
		},
		{
			"busy loop killed at the wall clock", "hostile-wall", `{"attack":"busy-loop","seconds":60}`, outcome.Timeout,
			`^cell hostile-wall was killed at its wall-clock deadline \(limits\.wall 1s\)$`,
			func(t *testing.T, o *outcome.Outcome) {
				// Not a timing test: the lower bound is the contract, the
				// upper one only says it was not left to spin for 60 s.
				if d := time.Duration(o.Duration); d < time.Second || d > 10*time.Second {
					t.Errorf("duration %v, want about the 1s wall", d)
				}
				if cpu := time.Duration(o.CPU); cpu > time.Duration(o.Duration) {
					t.Errorf("cpu %v above wall time %v: cpu 0.5 should throttle it", cpu, time.Duration(o.Duration))
				}
			},
		},
		{
			"stdout flood past the output cap", "hostile", `{"attack":"stdout-flood"}`, outcome.OutputTooLarge,
			`^cell hostile wrote more than limits\.output \(64KiB\) to stdout and was killed$`, nil,
		},
		{
			"undeclared syscall syslog", "hostile-seccomp", `{"attack":"undeclared-syscall","syscall":"syslog"}`, outcome.Violation,
			`^cell hostile-seccomp was stopped: it used the undeclared syscall syslog$`, violationOf("syslog"),
		},
		{
			"undeclared syscall personality", "hostile-seccomp", `{"attack":"undeclared-syscall","syscall":"personality"}`, outcome.Violation,
			`^cell hostile-seccomp was stopped: it used the undeclared syscall personality$`, violationOf("personality"),
		},
		{
			"undeclared syscall sysinfo", "hostile-seccomp", `{"attack":"undeclared-syscall","syscall":"sysinfo"}`, outcome.Violation,
			`^cell hostile-seccomp was stopped: it used the undeclared syscall sysinfo$`, violationOf("sysinfo"),
		},
		{
			"exit 1 with the stderr tail", "hostile", `{"attack":"net-connect"}`, outcome.Error,
			`^cell hostile exited with status 1: hostile: net-connect: input\.port must be 1-65535`,
			func(t *testing.T, o *outcome.Outcome) {
				if o.ExitCode != 1 || !strings.Contains(o.Stderr, "input.port must be 1-65535") || len(o.Result) != 0 {
					t.Errorf("exit %d, stderr %q, result %s", o.ExitCode, o.Stderr, o.Result)
				}
			},
		},
		{
			"output that is not JSON", "hostile", `{"attack":"bad-output","output":"text"}`, outcome.InvalidOutput,
			`^cell hostile returned invalid output: stdout is not JSON`, noResult,
		},
		{
			"output that is a JSON array", "hostile", `{"attack":"bad-output","output":"array"}`, outcome.InvalidOutput,
			`^cell hostile returned invalid output: stdout is a JSON array, not an object$`, noResult,
		},
		{
			"output that does not match the schema", "hostile", `{"attack":"bad-output","output":"mismatch"}`, outcome.InvalidOutput,
			`^cell hostile returned invalid output: does not match the output schema`, noResult,
		},
		{
			"two JSON values", "hostile", `{"attack":"bad-output","output":"two"}`, outcome.InvalidOutput,
			`^cell hostile returned invalid output: stdout holds more than one JSON value$`, noResult,
		},
		{
			"no output", "hostile", `{"attack":"bad-output","output":"empty"}`, outcome.InvalidOutput,
			`^cell hostile returned invalid output: stdout is empty`, noResult,
		},
		{
			// What fits under the cap is a good result; the rest is spaces.
			// Whether the kernel kills it or it exits first, never ok.
			"a valid result padded past the output cap, then exit 0", "hostile", `{"attack":"bad-output","output":"padded"}`, outcome.OutputTooLarge,
			`^cell hostile wrote more than limits\.output \(64KiB\) to stdout( and was killed)?$`,
			func(t *testing.T, o *outcome.Outcome) {
				if len(o.Result) != 0 {
					t.Errorf("result %s from a cell whose stdout passed the cap", o.Result)
				}
			},
		},
		{
			"crashed", "hostile", `{"attack":"crash"}`, outcome.Crashed,
			`^cell hostile was killed by SIGSEGV$`,
			func(t *testing.T, o *outcome.Outcome) {
				if o.Signal != "SIGSEGV" || o.ExitCode != -1 || len(o.Result) != 0 {
					t.Errorf("signal %q, exit %d, result %s; want SIGSEGV, -1, none", o.Signal, o.ExitCode, o.Result)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, code, stderr := ctlRun(t, e, tt.cell, tt.input)
			if o.Verdict != tt.verdict {
				t.Fatalf("verdict %q (%s), want %q", o.Verdict, o.Message, tt.verdict)
			}
			if !regexp.MustCompile(tt.message).MatchString(o.Message) {
				t.Errorf("message %q does not match %q", o.Message, tt.message)
			}
			wantCode := exitCallFailed
			if tt.verdict == outcome.OK {
				wantCode = 0
			}
			if code != wantCode {
				t.Errorf("tccctl exit %d, want %d; stderr %q", code, wantCode, stderr)
			}
			if tt.verdict != outcome.OK && !strings.Contains(stderr, "[verdict "+string(tt.verdict)+"]") {
				t.Errorf("tccctl stderr %q does not name the verdict", stderr)
			}
			checkWiped(t, e, o)
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}

	// Input that does not match the input schema: refused before any
	// sandbox or audit event.
	t.Run("input not matching the schema", func(t *testing.T) {
		before := ledgerSize(t, e)
		for _, in := range []string{`{"attack":"no-such-attack"}`, `{"attack":"pids","extra":1}`, `{"n":3}`, `[1,2]`} {
			out, code := e.Ctl("run", "hostile", "--input", in)
			if code != exitFailure || !strings.Contains(out, "input for cell hostile: does not match the input schema") {
				t.Errorf("run --input %s: exit %d, %q; want exit 1 and the schema refusal", in, code, out)
			}
			status, ae := postRun(t, e, "hostile", in)
			if status != http.StatusBadRequest || ae.Code != api.CodeBadRequest {
				t.Errorf("POST /v1/cells/hostile/run %s: HTTP %d code %q, want 400 %q", in, status, ae.Code, api.CodeBadRequest)
			}
		}
		if after := ledgerSize(t, e); after != before {
			t.Errorf("refused input appended %d ledger events; want none", after-before)
		}
		// Input larger than limits.input (64KiB): refused before it is read.
		big := `{"attack":"pids","token":"` + strings.Repeat("a", 70<<10) + `"}`
		if status, ae := postRun(t, e, "hostile", big); status != http.StatusRequestEntityTooLarge || !strings.Contains(ae.Message, "limits.input") {
			t.Errorf("oversized input: HTTP %d %q; want 413 naming limits.input", status, ae.Message)
		}
	})
	noCellProcesses(t, e)
}

// TestCancelKillsSandbox kills the tccctl client in the middle of a long
// call: the daemon must kill the sandbox at once, not at the deadline, and
// wipe it.
func TestCancelKillsSandbox(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("test/cells/hostile", rename("hostile-long", "  wall: 5s", "  wall: 30s"))

	cmd := exec.Command(filepath.Join(bin, "tccctl"), "run", "hostile-long", "--input", `{"attack":"busy-loop","seconds":25}`)
	cmd.Env = append(os.Environ(), "TCC_SOCKET="+e.Socket)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCell(t, e, "hostile")
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	line := waitLog(t, e, "verdict=cancelled", 15*time.Second)
	if d := time.Since(killed); d > 10*time.Second {
		t.Errorf("the sandbox ended %v after the client went away", d)
	}
	if !strings.Contains(line, "wipe_clean=true") {
		t.Errorf("call log line %q: want wipe_clean=true", line)
	}
	waitRunning(t, e, 0)
	noCellProcesses(t, e)
	sandboxDirsEmpty(t, e)
}

// TestStopDuringCall sends SIGTERM while a call runs: the call ends
// cancelled and wiped, the daemon exits 0 and removes its socket.
func TestStopDuringCall(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("test/cells/hostile", rename("hostile-long", "  wall: 5s", "  wall: 30s"))
	type res struct {
		o   *outcome.Outcome
		err error
	}
	done := make(chan res, 1)
	go func() {
		o, err := e.Client().Run(context.Background(), api.RunRequest{Cell: "hostile-long", Input: json.RawMessage(`{"attack":"busy-loop","seconds":25}`)})
		done <- res{o, err}
	}()
	waitCell(t, e, "hostile")
	stopped := time.Now()
	e.Stop() // SIGTERM; fails the test unless tccd exits 0 within 30 s
	if d := time.Since(stopped); d > 15*time.Second {
		t.Errorf("tccd took %v to stop with a call running", d)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("the running call got no outcome: %v", r.err)
	}
	if r.o.Verdict != outcome.Cancelled || !r.o.Wipe.Clean || r.o.EndSeq == 0 {
		t.Errorf("outcome of the call cut by SIGTERM: verdict %s, wipe %+v, end seq %d; want cancelled, clean, recorded", r.o.Verdict, r.o.Wipe, r.o.EndSeq)
	}
	if _, err := os.Lstat(e.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s still exists after SIGTERM: %v", e.Socket, err)
	}
	noCellProcesses(t, e)
	e.CheckNoLeftovers()
	if log := string(mustRead(t, e.Log)); !strings.Contains(log, "tccd stopping") {
		t.Errorf("the log does not say the daemon stopped")
	}
}

// TestOrphanSweep kills the daemon with SIGKILL during a long call: its
// sandbox outlives it. The next daemon must remove every piece of it at
// start, say so in its log, and run calls again.
func TestOrphanSweep(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("test/cells/hostile", rename("hostile-long", "  wall: 5s", "  wall: 30s"))
	go e.Client().Run(context.Background(), api.RunRequest{Cell: "hostile-long", Input: json.RawMessage(`{"attack":"busy-loop","seconds":20}`)})
	waitCell(t, e, "hostile")
	e.Kill9()

	// What the dead daemon left: its cgroups and sandbox state (and, as
	// long as the cell lives, its processes).
	left := cellProcesses(e)
	var cgs []string
	for _, h := range cgroupHierarchies() {
		ents, _ := os.ReadDir(filepath.Join(h, e.Cgroup))
		for _, ent := range ents {
			if ent.IsDir() {
				cgs = append(cgs, filepath.Join(h, e.Cgroup, ent.Name()))
			}
		}
	}
	rootfs, _ := os.ReadDir(filepath.Join(e.State, "sandboxes", "rootfs"))
	e.Start() // sweeps
	if len(cgs) == 0 || len(rootfs) == 0 || len(left) == 0 {
		t.Fatalf("after kill -9: %d sandbox cgroups, %d rootfs dirs, processes %v; the test needs an orphan to sweep", len(cgs), len(rootfs), left)
	}
	log := string(mustRead(t, e.Log))
	for _, want := range []string{"removed orphan of a previous daemon", "object=\"cgroup " + cgs[0], "object=\"rootfs ", "object=\"state ", "object=\"process "} {
		if !strings.Contains(log, want) {
			t.Errorf("the restarted daemon's log does not contain %q", want)
		}
	}
	for _, d := range cgs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("orphan cgroup %s survived the sweep", d)
		}
	}
	noCellProcesses(t, e)
	sandboxDirsEmpty(t, e)
	if o := runCell(t, e, "hostile-long", `{"attack":"pids"}`); o.Verdict != outcome.OK {
		t.Errorf("call after the sweep: %s %s", o.Verdict, o.Message)
	}
}

// rename returns a cell.yaml edit giving the cell another name and making
// the replacements given as old, new pairs (a limit, say).
func rename(name string, oldNew ...string) func(string) string {
	return func(y string) string {
		y = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(y, "name: "+name)
		for i := 0; i+1 < len(oldNew); i += 2 {
			if !strings.Contains(y, oldNew[i]) {
				panic("cell.yaml has no " + strconv.Quote(oldNew[i]))
			}
			y = strings.Replace(y, oldNew[i], oldNew[i+1], 1)
		}
		return y
	}
}

// ctlRun runs `tccctl run CELL --input INPUT --json` and returns the
// outcome, the exit code and stderr.
func ctlRun(t *testing.T, e *Env, cell, input string) (*outcome.Outcome, int, string) {
	t.Helper()
	stdout, stderr, code := e.CtlSplit(nil, "run", cell, "--input", input, "--json")
	return parseOutcome(t, stdout), code, stderr
}

// runCell calls a cell through the API client.
func runCell(t *testing.T, e *Env, cell, input string) *outcome.Outcome {
	t.Helper()
	o, err := e.Client().Run(context.Background(), api.RunRequest{Cell: cell, Input: json.RawMessage(input)})
	if err != nil {
		t.Fatalf("run %s %s: %v", cell, input, err)
	}
	return o
}

func parseOutcome(t *testing.T, s string) *outcome.Outcome {
	t.Helper()
	var o outcome.Outcome
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		t.Fatalf("not an outcome (%v):\n%s", err, s)
	}
	return &o
}

// result decodes a hostile cell's report.
func result(t *testing.T, o *outcome.Outcome) attack.Result {
	t.Helper()
	if o.Verdict != outcome.OK {
		t.Fatalf("verdict %s (%s), want ok; stderr %q", o.Verdict, o.Message, o.Stderr)
	}
	var r attack.Result
	if err := json.Unmarshal(o.Result, &r); err != nil {
		t.Fatalf("result %s: %v", o.Result, err)
	}
	return r
}

func violationOf(syscall string) func(*testing.T, *outcome.Outcome) {
	return func(t *testing.T, o *outcome.Outcome) {
		if o.Violation == nil || o.Violation.Syscall != syscall || o.Signal != "SIGSYS" || len(o.Result) != 0 {
			t.Errorf("violation %+v, signal %q, result %s; want %s, SIGSYS and no result", o.Violation, o.Signal, o.Result, syscall)
		}
	}
}

func noResult(t *testing.T, o *outcome.Outcome) {
	if len(o.Result) != 0 || o.ExitCode != 0 {
		t.Errorf("result %s, exit %d; want no result from a cell that exited 0 with bad output", o.Result, o.ExitCode)
	}
}

// checkWiped checks the outcome's wipe report and the outcome's audit
// bracket, and that no process of the call remains.
func checkWiped(t *testing.T, e *Env, o *outcome.Outcome) {
	t.Helper()
	if !o.Wipe.Clean || len(o.Wipe.Leftovers) > 0 || o.Wipe.Elapsed <= 0 {
		t.Errorf("wipe %+v; want clean, nothing left", o.Wipe)
	}
	if o.BeginSeq == 0 || o.EndSeq <= o.BeginSeq {
		t.Errorf("ledger seqs begin %d end %d; want both, end after begin", o.BeginSeq, o.EndSeq)
	}
	if ps := cellProcesses(e); len(ps) > 0 {
		t.Errorf("processes left in the daemon's cgroups after the call: %v", ps)
	}
}

// postRun posts input to a cell's run route and returns the HTTP status
// and error body.
func postRun(t *testing.T, e *Env, cell, input string) (int, api.Error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, api.BaseURL+"/v1/cells/"+cell+"/run", strings.NewReader(input))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.Client().HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ae api.Error
	_ = json.NewDecoder(resp.Body).Decode(&ae)
	return resp.StatusCode, ae
}

// waitRunning waits until the daemon reports n running sandboxes.
func waitRunning(t *testing.T, e *Env, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := e.Client().Status(context.Background())
		if err == nil && s.Sandboxes.Running == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not report %d running sandboxes within 20s (status %+v, %v)", n, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCell waits until the cell's own process (comm, after runc init
// exec'd it) runs in one of the env's cgroups.
func waitCell(t *testing.T, e *Env, comm string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, p := range cellProcesses(e) {
			if strings.HasSuffix(p, "("+comm+")") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s process in the env's cgroups within 20s (%v)", comm, cellProcesses(e))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits for a line of the daemon's log containing s.
func waitLog(t *testing.T, e *Env, s string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, line := range strings.Split(string(mustRead(t, e.Log)), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's log within %v", s, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cellProcesses lists the host processes in the env's cgroups, in any
// hierarchy, as "pid (comm)".
func cellProcesses(e *Env) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !strings.Contains(string(cg), e.Cgroup+"/") {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		out = append(out, fmt.Sprintf("%s (%s)", filepath.Base(p), strings.TrimSpace(string(comm))))
	}
	return out
}

// noCellProcesses fails if a process of the env's sandboxes remains, in
// its cgroups or with a sandbox uid outside any tcc cgroup.
func noCellProcesses(t *testing.T, e *Env) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps := cellProcesses(e)
		if len(ps) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the env's sandboxes remain: %v", ps)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil {
			continue
		}
		if uid, ok := procUID(p); ok && uid >= 1<<30 && !strings.Contains(string(cg), "tcc") {
			t.Errorf("process %s runs with sandbox uid %d outside any tcc cgroup", filepath.Base(p), uid)
		}
	}
}

// sandboxDirsEmpty checks the daemon's per-call state and rootfs dirs.
func sandboxDirsEmpty(t *testing.T, e *Env) {
	t.Helper()
	for _, d := range []string{"state", "rootfs"} {
		dir := filepath.Join(e.State, "sandboxes", d)
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Errorf("%s holds %d entries, want none", dir, len(ents))
		}
	}
	for _, h := range cgroupHierarchies() {
		ents, _ := os.ReadDir(filepath.Join(h, e.Cgroup))
		for _, ent := range ents {
			if ent.IsDir() {
				t.Errorf("sandbox cgroup %s remains", filepath.Join(h, e.Cgroup, ent.Name()))
			}
		}
	}
}

func cgroupHierarchies() []string {
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	out := []string{"/sys/fs/cgroup"}
	for _, h := range hs {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			out = append(out, h)
		}
	}
	return out
}
