package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/kernel/sandbox"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

const (
	// pollEvery is how often a running cell's monitor counters are read;
	// a deviation is acted on within about this long.
	pollEvery = 10 * time.Millisecond
	// scoreEvery is how often the full histograms are read and scored.
	scoreEvery = 100 * time.Millisecond
	// maxProgressLine bounds one progress report; longer lines are dropped.
	maxProgressLine = 4096
	// maxProgress bounds the reports forwarded per call.
	maxProgress = 1000
)

// stopReason is why the kernel killed a cell, if it did.
type stopReason int

const (
	notStopped stopReason = iota
	stopTimeout
	stopOutput
	stopCancel
	stopHalt
)

// run prepares, launches, watches and wipes one call's sandbox, filling o.
func (k *Kernel) run(ctx context.Context, cell *Cell, c *compiled, req Request, o *outcome.Outcome) {
	m := cell.Manifest
	fail := func(what string, err error) {
		o.Verdict = outcome.Internal
		o.Message = fmt.Sprintf("cell %s could not run: %s: %v", m.Name, what, err)
		k.log.Error("call failed inside the daemon", "cell", m.Name, "trace_id", req.TraceID, "step", what, "err", err)
	}

	stdout := &capWriter{limit: int(m.Limits.Output), over: make(chan struct{})}
	stderr := &tailWriter{limit: int(m.Limits.Stderr)}
	pr, pw, err := os.Pipe()
	if err != nil {
		fail("progress pipe", err)
		return
	}
	defer pr.Close()

	created := time.Now()
	sb, err := k.sandboxes.Prepare(ctx, k.spec(cell, c, req, stdout, stderr, pw))
	pw.Close() // the cell holds its own copy
	if err != nil {
		if ctx.Err() != nil {
			// The caller went away (or the daemon is stopping) while the
			// sandbox was being made: nothing ran, nothing failed.
			o.Verdict, o.Message = outcome.Cancelled, fmt.Sprintf("the call was cancelled before cell %s started; it never ran", m.Name)
			return
		}
		fail("prepare sandbox", err)
		return
	}
	prepared := time.Now()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		readProgress(pr, req.Progress)
	}()

	var (
		watch *monitor.Watch
		base  *monitor.Baseline
		final monitor.Counters
	)
	defer func() {
		rep := sb.Destroy()
		o.Wipe = outcome.Wipe{Clean: rep.Clean(), Leftovers: rep.Remaining, Elapsed: outcome.Duration(rep.Duration)}
		if rep.Err != nil {
			o.Wipe.Leftovers = append(o.Wipe.Leftovers, "wipe error: "+rep.Err.Error())
		}
		if watch != nil {
			if _, err := watch.Close(); err != nil {
				o.Wipe.Clean = false
				o.Wipe.Leftovers = append(o.Wipe.Leftovers, "monitor: "+err.Error())
			}
			if res, err := k.monitor.Residue(sb.CgroupID()); err != nil || len(res) > 0 {
				o.Wipe.Clean = false
				o.Wipe.Leftovers = append(o.Wipe.Leftovers, res...)
			}
		}
		if !o.Wipe.Clean {
			k.log.Error("sandbox not wiped clean", "cell", m.Name, "trace_id", req.TraceID, "leftovers", o.Wipe.Leftovers)
		}
		// The whole life of the sandbox, create to wiped, for benchmarks.
		k.log.Debug("sandbox timing", "cell", m.Name, "trace_id", req.TraceID, "prepare", prepared.Sub(created), "run", time.Duration(o.Duration), "wipe", rep.Duration, "total", time.Since(created))
		<-progressDone
	}()

	if k.monitor != nil {
		base = req.Baseline
		if base == nil {
			if base, err = k.cfg.Catalog.Baseline(cell.Identity); err != nil {
				fail("read baseline", err)
				return
			}
		}
		// Fail closed: a cell the monitor should watch but cannot does
		// not run.
		if watch, err = k.monitor.Watch(sb.CgroupID(), base); err != nil {
			fail("watch with the behaviour monitor", err)
			return
		}
	}

	if err := sb.Launch(); err != nil {
		fail("launch", err)
		return
	}
	start := time.Now()
	r := &running{k: k, sb: sb, watch: watch, base: base, cell: cell}
	exit, werr := r.wait(ctx, m.Limits.Wall.Std(), stdout.over)
	o.Duration = outcome.Duration(time.Since(start))
	if werr != nil {
		fail("wait", werr)
		return
	}
	if st, err := sb.Stats(); err == nil {
		o.CPU = outcome.Duration(st.CPUTime)
		o.PeakMemory = int64(st.MemoryPeak)
		r.stats = st
	} else {
		k.log.Warn("cannot read cell stats", "cell", m.Name, "err", err)
	}
	if watch != nil {
		if final, err = watch.Close(); err != nil {
			k.log.Warn("monitor close", "cell", m.Name, "err", err)
		}
		final.CPU, final.PeakMemory = r.stats.CPUTime, r.stats.MemoryPeak
	}
	o.ExitCode = exit.Code
	if exit.Signal != 0 {
		o.Signal = unix.SignalName(exit.Signal)
	}
	o.Stderr = stderr.String()
	k.classify(o, m, c, r, exit, stdout, final)
	o.Monitor = r.report(final)
	if watch != nil && req.Observe != nil {
		// The worse of what was seen while it ran and at the end: a run
		// that deviated mid-way must not teach a baseline.
		d := r.score(final)
		if r.deviation != nil && r.deviation.Score > d.Score {
			d = *r.deviation
		}
		req.Observe(final, d)
	}
}

// spec turns the contract into a sandbox specification.
func (k *Kernel) spec(cell *Cell, c *compiled, req Request, stdout *capWriter, stderr *tailWriter, progress *os.File) sandbox.Spec {
	m := cell.Manifest
	files := make([]sandbox.File, 0, len(m.Files))
	for p, d := range m.Files {
		files = append(files, sandbox.File{Path: p, Source: k.cfg.Catalog.ObjectPath(d), Exec: p == m.Entrypoint})
	}
	var tmp int64
	if m.Filesystem.Tmp {
		tmp = int64(m.Limits.Tmp)
	}
	devices := make([]string, len(m.Filesystem.Devices))
	for i, d := range m.Filesystem.Devices {
		devices[i] = string(d)
	}
	return sandbox.Spec{
		ID:         req.TraceID,
		Files:      files,
		Entrypoint: m.Entrypoint,
		Args:       m.Args,
		Env:        []string{"PATH=/cell"},
		Memory:     int64(m.Limits.Memory),
		Pids:       int64(m.Limits.Pids),
		CPU:        float64(m.Limits.CPU),
		OpenFiles:  uint64(m.Limits.OpenFiles),
		Tmp:        tmp,
		Proc:       m.Filesystem.Proc,
		Devices:    devices,
		Seccomp:    c.profile.Config(),
		Stdin:      bytes.NewReader(req.Input),
		Stdout:     stdout,
		Stderr:     stderr,
		Progress:   progress,
	}
}

// running is a launched cell being waited for.
type running struct {
	k     *Kernel
	sb    *sandbox.Sandbox
	watch *monitor.Watch
	base  *monitor.Baseline
	cell  *Cell
	stats sandbox.Stats

	stopped     stopReason
	scoredNovel uint64             // Counters.NovelPairs at the last score
	deviation   *monitor.Deviation // the first deviation seen while running
	action      string             // what the policy did about it
}

// wait waits for the cell to exit, killing it at the deadline, on output
// overflow, when the caller goes away, or when the monitor's policy says
// halt.
func (r *running) wait(ctx context.Context, wall time.Duration, overflow <-chan struct{}) (sandbox.Exit, error) {
	type result struct {
		exit sandbox.Exit
		err  error
	}
	done := make(chan result, 1)
	go func() {
		e, err := r.sb.Wait(context.Background())
		done <- result{e, err}
	}()
	deadline := time.NewTimer(wall)
	defer deadline.Stop()
	var (
		tick      <-chan time.Time
		notify    <-chan struct{}
		lastScore time.Time
	)
	if r.watch != nil {
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		tick, notify = t.C, r.watch.Notify()
	}
	cancelled := ctx.Done()
	stop := func(why stopReason) {
		if r.stopped == notStopped {
			r.stopped = why
		}
		_ = r.sb.Kill()
		deadline.Stop()
		tick, notify, overflow, cancelled = nil, nil, nil, nil
	}
	for {
		select {
		case res := <-done:
			return res.exit, res.err
		case <-deadline.C:
			stop(stopTimeout)
		case <-overflow:
			stop(stopOutput)
		case <-cancelled:
			stop(stopCancel)
		case <-notify:
			if r.check(true) {
				stop(stopHalt)
			}
			lastScore = time.Now()
		case now := <-tick:
			full := now.Sub(lastScore) >= scoreEvery
			if full {
				lastScore = now
			}
			if r.check(full) {
				stop(stopHalt)
			}
		}
	}
}

// check reads the monitor's counters of the running cell and applies the
// manifest's policy. It reports whether the cell must be halted. Lost
// events halt whatever the policy: the monitor fails closed.
func (r *running) check(full bool) (halt bool) {
	var (
		c   monitor.Counters
		err error
	)
	if full {
		c, err = r.watch.Snapshot()
	} else {
		c, err = r.watch.Poll()
	}
	if err != nil {
		r.note(monitor.Deviation{Score: 1, Reasons: []string{"monitor could not read the cell's counters: " + err.Error()}}, "halted (fail closed)")
		return true
	}
	if c.Kills > 0 {
		// seccomp killed one of the cell's tasks. Whichever it was, the
		// contract is broken: stop the whole cell, so that it cannot go
		// on (nor keep the monitor from judging it) by sacrificing a
		// child to the filter. classify calls it a violation.
		return true
	}
	if c.Lost() {
		r.note(monitor.Score(c, nil), "halted (fail closed: the monitor lost events)")
		return true
	}
	// Between full scores, only a novel pair the last score did not see
	// is worth reading everything for.
	if !full && c.NovelPairs <= r.scoredNovel {
		return false
	}
	r.scoredNovel = c.NovelPairs
	if !full {
		if c, err = r.watch.Snapshot(); err != nil {
			return false
		}
	}
	d := r.score(c)
	if d.Score < r.cell.Manifest.Monitor.Threshold {
		return false
	}
	switch r.cell.Manifest.Monitor.Policy {
	case manifest.PolicyHalt:
		r.note(d, "halted")
		return true
	case manifest.PolicyThrottle:
		if r.action == "" {
			cores := float64(r.cell.Manifest.Limits.CPU) / 10
			if err := r.sb.SetCPU(max(cores, 0.01)); err != nil {
				r.note(d, "throttle failed: "+err.Error())
			} else {
				r.note(d, fmt.Sprintf("throttled to %.2g cores", max(cores, 0.01)))
			}
		}
	default:
		r.note(d, "logged")
	}
	return false
}

// score judges counters against the baseline and what the contract
// declares (the entropy band), which holds even without a baseline.
func (r *running) score(c monitor.Counters) monitor.Deviation {
	x := monitor.Expect{Runtime: runtimeSyscalls()}
	if e := r.cell.Manifest.Monitor.Entropy; e != nil {
		x.Entropy = &monitor.Band{Min: e.Min, Max: e.Max}
	}
	return monitor.ScoreWith(c, r.base, x)
}

// runtimeSyscalls are the seccomp base set's numbers: what every cell's
// runtime may make at moments that depend on timing, whose novelty the
// monitor weighs low (monitor.Expect.Runtime).
var runtimeSyscalls = sync.OnceValue(func() map[uint32]bool {
	m := map[uint32]bool{}
	for _, name := range seccompprofiles.Base().Syscalls {
		if nr, ok := monitor.SyscallNumber(name); ok {
			m[nr] = true
		}
	}
	return m
})

func (r *running) note(d monitor.Deviation, action string) {
	if r.deviation == nil {
		r.deviation, r.action = &d, action
	}
}

// monitorReport is what a call records of its behaviour.
type monitorReport struct {
	Available   bool                 `json:"available"`
	Reason      string               `json:"reason,omitempty"`
	Baseline    bool                 `json:"baseline"`
	Fingerprint *monitor.Fingerprint `json:"fingerprint,omitempty"`
	Deviation   *monitor.Deviation   `json:"deviation,omitempty"`
	Action      string               `json:"action,omitempty"`
}

func (r *running) report(final monitor.Counters) json.RawMessage {
	rep := monitorReport{Available: r.watch != nil, Baseline: r.base != nil}
	if r.watch == nil {
		_, rep.Reason = r.k.MonitorStatus()
	} else {
		fp := monitor.Summarize(final, r.base)
		rep.Fingerprint = &fp
		if r.deviation != nil {
			rep.Deviation, rep.Action = r.deviation, r.action
			// A cell that was not halted ran on: its whole run says more
			// than the moment the deviation was first seen.
			if d := r.score(final); r.stopped != stopHalt && d.Score > r.deviation.Score {
				rep.Deviation = &d
			}
		} else if d := r.score(final); d.Deviant() {
			rep.Deviation, rep.Action = &d, "logged after exit"
		}
	}
	b, _ := json.Marshal(rep)
	return b
}

// classify turns how the cell ended into a verdict and a message.
func (k *Kernel) classify(o *outcome.Outcome, m *manifest.Manifest, c *compiled, r *running, exit sandbox.Exit, stdout *capWriter, final monitor.Counters) {
	name := m.Name
	set := func(v outcome.Verdict, format string, args ...any) {
		o.Verdict, o.Message = v, fmt.Sprintf(format, args...)
	}
	switch {
	case exit.Signal == syscall.SIGSYS || final.Kills > 0:
		// The cell itself, or any process of it, was killed by seccomp.
		v := &outcome.SyscallViolation{Nr: -1}
		if len(final.SeccompKills) > 0 {
			v.Nr, v.Syscall = int(final.SeccompKills[0].Nr), final.SeccompKills[0].Name
		}
		o.Violation = v
		if v.Syscall != "" {
			set(outcome.Violation, "cell %s was stopped: it used the undeclared syscall %s", name, v.Syscall)
		} else {
			set(outcome.Violation, "cell %s was stopped: it used an undeclared syscall (which one is unknown: %s)", name, k.whyNoSyscall())
		}
	case r.stopped == stopHalt:
		reasons := "it deviated from its baseline"
		if r.deviation != nil && len(r.deviation.Reasons) > 0 {
			reasons = strings.Join(r.deviation.Reasons, "; ")
		}
		set(outcome.Halted, "cell %s was halted by the behaviour monitor (%s): %s", name, r.action, reasons)
	case r.stopped == stopCancel:
		set(outcome.Cancelled, "the call was cancelled; cell %s was killed", name)
	case r.stopped == stopTimeout:
		set(outcome.Timeout, "cell %s was killed at its wall-clock deadline (limits.wall %s)", name, m.Limits.Wall)
	case r.stopped == stopOutput:
		set(outcome.OutputTooLarge, "cell %s wrote more than limits.output (%s) to stdout and was killed", name, m.Limits.Output)
	case r.stats.OOMKills > 0:
		set(outcome.OOM, "cell %s was killed at its memory limit (limits.memory %s)", name, m.Limits.Memory)
	case r.stats.PidsLimitHits > 0 && (exit.Code != 0 || exit.Signal != 0):
		set(outcome.PidsLimit, "cell %s hit its process limit (limits.pids %d) and failed", name, m.Limits.Pids)
	case exit.Signal != 0:
		set(outcome.Crashed, "cell %s was killed by %s", name, unix.SignalName(exit.Signal))
	case exit.Code != 0:
		msg := fmt.Sprintf("cell %s exited with status %d", name, exit.Code)
		if last := lastLine(o.Stderr); last != "" {
			msg += ": " + last
		}
		set(outcome.Error, "%s", msg)
	default:
		res, err := parseResult(stdout.Bytes())
		if err == nil {
			err = c.output.Validate(res)
			if err != nil {
				err = fmt.Errorf("does not match the output schema: %w", err)
			}
		}
		if err != nil {
			set(outcome.InvalidOutput, "cell %s returned invalid output: %v", name, err)
			return
		}
		o.Verdict, o.Result = outcome.OK, res
	}
	if r.deviation != nil && r.stopped != stopHalt && o.Verdict == outcome.OK {
		o.Message = fmt.Sprintf("cell %s deviated from its baseline (%s)", name, r.action)
	}
}

func (k *Kernel) whyNoSyscall() string {
	if ok, why := k.MonitorStatus(); !ok {
		return "the behaviour monitor is unavailable: " + why
	}
	return "the monitor saw no seccomp kill"
}

// parseResult checks that stdout is exactly one JSON object.
func parseResult(b []byte) (json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("stdout is empty; a cell must write one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("stdout is not JSON: %v", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(b)) {
		return nil, fmt.Errorf("stdout holds more than one JSON value")
	}
	if v[0] != '{' {
		return nil, fmt.Errorf("stdout is a JSON %s, not an object", jsonKind(v[0]))
	}
	return v, nil
}

func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// readProgress forwards the cell's fd 3 lines until EOF.
func readProgress(r *os.File, emit func(Progress)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxProgressLine)
	n := 0
	for {
		if !sc.Scan() {
			if sc.Err() == bufio.ErrTooLong {
				// Skip the long line and go on.
				sc = bufio.NewScanner(r)
				sc.Buffer(make([]byte, 0, 512), maxProgressLine)
				continue
			}
			return
		}
		var p Progress
		if emit == nil || n >= maxProgress || json.Unmarshal(sc.Bytes(), &p) != nil {
			continue
		}
		n++
		emit(p)
	}
}

// capWriter keeps stdout up to a limit; past it, it signals once and
// discards the rest (so the copy from the cell's pipe keeps draining until
// the cell is killed).
type capWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
	over  chan struct{}
	full  bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.full {
		return len(p), nil
	}
	if room := w.limit - w.buf.Len(); len(p) > room {
		w.buf.Write(p[:room])
		w.full = true
		close(w.over)
		return len(p), nil
	}
	return w.buf.Write(p)
}

func (w *capWriter) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// tailWriter keeps the last limit bytes written.
type tailWriter struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit <= 0 {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.limit; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
