package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// a deviation is acted on within about this long (and, for a cell that
	// exits first, after its exit, before any verdict).
	pollEvery = 10 * time.Millisecond
	// scoreEvery is how often the full histograms are read and scored.
	scoreEvery = 100 * time.Millisecond
	// maxProgressLine bounds one progress report; longer lines are dropped.
	maxProgressLine = 4096
	// maxProgress bounds the reports forwarded per call.
	maxProgress = 1000
	// progressQueue bounds the reports waiting for a slow Progress
	// callback; past it they are dropped.
	progressQueue = 16
	// progressDrain bounds the wait, after the wipe, for the last reports
	// still in the pipe; progressDeliver, for the callback to take the
	// ones queued (a healthy one takes microseconds).
	progressDrain   = time.Second
	progressDeliver = 200 * time.Millisecond
)

// killGrace bounds the wait for a cell the kernel killed to be reaped: one
// stuck in the kernel must not hold its call (and its slot) for ever. A
// variable so that tests can shorten it.
var killGrace = 10 * time.Second

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
// files are the store files the gate hashed, open, by manifest path.
func (k *Kernel) run(ctx context.Context, cell *Cell, c *compiled, files map[string]*os.File, req Request, o *outcome.Outcome) {
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
	progress := forwardProgress(pr, req.Progress)
	defer progress.stop()

	created := time.Now()
	sb, err := k.sandboxes.Prepare(ctx, k.spec(cell, c, files, req, stdout, stderr, pw))
	pw.Close() // the cell holds its own copy
	if err != nil {
		// What Prepare had made is gone; its clean-up was checked.
		var se *sandbox.Error
		if errors.As(err, &se) && se.Wipe != nil {
			o.Wipe = wipeOf(*se.Wipe)
		}
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

	var watch *monitor.Watch
	defer func() {
		o.Wipe = wipeOf(sb.Destroy())
		if watch != nil {
			// Closed already unless the call failed before the cell exited;
			// Close removes the cell's BPF map entries and checks that none
			// is left.
			if _, err := watch.Close(); err != nil {
				o.Wipe.Clean = false
				o.Wipe.Leftovers = append(o.Wipe.Leftovers, "monitor: "+err.Error())
			}
		}
		if !o.Wipe.Clean {
			k.log.Error("sandbox not wiped clean", "cell", m.Name, "trace_id", req.TraceID, "leftovers", o.Wipe.Leftovers)
		}
		// The whole life of the sandbox, create to wiped, for benchmarks.
		k.log.Debug("sandbox timing", "cell", m.Name, "trace_id", req.TraceID, "prepare", prepared.Sub(created), "run", time.Duration(o.Duration), "wipe", time.Duration(o.Wipe.Elapsed), "total", time.Since(created))
	}()

	var base *monitor.Baseline
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

	if ctx.Err() != nil {
		o.Verdict, o.Message = outcome.Cancelled, fmt.Sprintf("the call was cancelled before cell %s started; it never ran", m.Name)
		return
	}
	if err := sb.Launch(); err != nil {
		fail("launch", err)
		return
	}
	start := time.Now()
	r := &running{k: k, sb: sb, watch: watch, base: base, cell: cell}
	waitCtx, stopWaiting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWaiting()
	exit, werr := r.wait(ctx, r.exited(waitCtx), m.Limits.Wall.Std(), stdout.over)
	o.Duration = outcome.Duration(time.Since(start))
	if werr != nil {
		fail("wait", werr)
		return
	}
	st, serr := sb.Stats()
	if serr != nil {
		k.log.Warn("cannot read cell stats", "cell", m.Name, "trace_id", req.TraceID, "err", serr)
	}
	o.CPU, o.PeakMemory = outcome.Duration(st.CPUTime), int64(st.MemoryPeak)
	var final monitor.Counters
	if watch != nil {
		// Init was reaped, and its pid namespace with it: the cell's
		// processes are gone and the counters are final.
		var ferr error
		final, ferr = watch.Close()
		final.CPU, final.PeakMemory = st.CPUTime, st.MemoryPeak
		r.afterExit(final, ferr)
	}
	o.ExitCode = exit.Code
	if exit.Signal != 0 {
		o.Signal = unix.SignalName(exit.Signal)
	}
	o.Stderr = stderr.String()
	classify(o, m, c.output, r, exit, st, serr, stdout)
	o.Monitor = r.report(final)
	if watch != nil && req.Observe != nil {
		// The worse of what was seen while it ran and at the end: a run
		// that deviated mid-way must not teach a baseline.
		d := r.final
		if r.deviation != nil && r.deviation.Score > d.Score {
			d = *r.deviation
		}
		req.Observe(final, d)
	}
}

// wipeOf records a sandbox's wipe report in an outcome.
func wipeOf(rep sandbox.WipeReport) outcome.Wipe {
	w := outcome.Wipe{Clean: rep.Clean(), Leftovers: rep.Remaining, Elapsed: outcome.Duration(rep.Duration)}
	if rep.Err != nil {
		w.Leftovers = append(w.Leftovers, "wipe error: "+rep.Err.Error())
	}
	return w
}

// spec turns the contract into a sandbox specification.
func (k *Kernel) spec(cell *Cell, c *compiled, files map[string]*os.File, req Request, stdout *capWriter, stderr *tailWriter, progress *os.File) sandbox.Spec {
	m := cell.Manifest
	sf := make([]sandbox.File, 0, len(files))
	for p, f := range files {
		sf = append(sf, sandbox.File{Path: p, Source: f, Exec: p == m.Entrypoint})
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
		Files:      sf,
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

// cellSandbox is what waiting for a launched cell needs of its sandbox
// (*sandbox.Sandbox; an interface so that the wait can be tested alone).
type cellSandbox interface {
	Wait(context.Context) (sandbox.Exit, error)
	Kill() error
	SetCPU(cores float64) error
}

// running is a launched cell being waited for.
type running struct {
	k     *Kernel
	sb    cellSandbox
	watch *monitor.Watch // nil without the monitor
	base  *monitor.Baseline
	cell  *Cell

	stopped     stopReason
	scoredNovel uint64                // Counters.NovelPairs at the last score
	seccompKill bool                  // seccomp killed a task of the cell
	kills       []monitor.SeccompKill // which syscalls, as far as known
	deviation   *monitor.Deviation    // what the policy acted on (the first deviation, or why it halted)
	action      string                // what the policy did about it
	final       monitor.Deviation     // the score of the final counters
}

// exitResult is how the wait for the cell ended.
type exitResult struct {
	exit sandbox.Exit
	err  error
}

// exited waits for the cell in a goroutine of its own, until ctx ends.
func (r *running) exited(ctx context.Context) <-chan exitResult {
	done := make(chan exitResult, 1)
	go func() {
		e, err := r.sb.Wait(ctx)
		done <- exitResult{e, err}
	}()
	return done
}

// wait waits for the cell to exit (done), killing it at the deadline, on
// output overflow, when ctx ends (the caller went away), or when the
// monitor's policy says halt. A cell that exits by itself at the same
// moment as a deadline, cancel or overflow keeps its own ending: done is
// looked at first (a halt stands: it is a judgement of what the cell did).
// A killed cell not reaped within killGrace is an error.
func (r *running) wait(ctx context.Context, done <-chan exitResult, wall time.Duration, overflow <-chan struct{}) (sandbox.Exit, error) {
	deadline := time.NewTimer(wall)
	defer deadline.Stop()
	var (
		tick      <-chan time.Time
		notify    <-chan struct{}
		lastScore time.Time
		grace     <-chan time.Time
	)
	if r.watch != nil {
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		tick, notify = t.C, r.watch.Notify()
	}
	cancelled := ctx.Done()
	var (
		res      exitResult
		finished bool
	)
	stop := func(why stopReason) {
		select {
		case res = <-done:
			finished = true
		default:
		}
		if finished && why != stopHalt {
			return
		}
		if r.stopped == notStopped {
			r.stopped = why
		}
		if finished {
			return
		}
		if err := r.sb.Kill(); err != nil {
			r.k.log.Warn("kill cell", "cell", r.cell.Manifest.Name, "err", err)
		}
		deadline.Stop()
		tick, notify, overflow, cancelled = nil, nil, nil, nil
		grace = time.After(killGrace)
	}
	for !finished {
		select {
		case res = <-done:
			return res.exit, res.err
		default:
		}
		select {
		case res = <-done:
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
		case <-grace:
			return sandbox.Exit{}, fmt.Errorf("the cell was not reaped within %v of being killed", killGrace)
		}
	}
	return res.exit, res.err
}

// check reads the monitor's counters of the running cell and applies the
// manifest's policy. It reports whether the cell must be halted. It fails
// closed: a read error or lost events halt whatever the policy.
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
		r.halt(monitor.Deviation{Score: 1, Reasons: []string{"the monitor could not read the cell's counters: " + err.Error()}}, "halted (fail closed)")
		return true
	}
	if c.Kills > 0 {
		// seccomp killed one of the cell's tasks. Whichever it was, the
		// contract is broken: stop the whole cell, so that it cannot go
		// on (nor keep the monitor from judging it) by sacrificing a
		// child to the filter. classify calls it a violation.
		r.seccompKill, r.kills = true, c.SeccompKills
		return true
	}
	if c.Lost() {
		r.halt(monitor.Score(c, nil), "halted (fail closed: the monitor lost events)")
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
			r.halt(monitor.Deviation{Score: 1, Reasons: []string{"the monitor could not read the cell's counters: " + err.Error()}}, "halted (fail closed)")
			return true
		}
	}
	d := r.score(c)
	if d.Score < r.cell.Manifest.Monitor.Threshold {
		return false
	}
	switch r.cell.Manifest.Monitor.Policy {
	case manifest.PolicyHalt:
		r.halt(d, "halted")
		return true
	case manifest.PolicyThrottle:
		if r.action == "" {
			cores := max(float64(r.cell.Manifest.Limits.CPU)/10, 0.01)
			if err := r.sb.SetCPU(cores); err != nil {
				r.note(d, "throttle failed: "+err.Error())
			} else {
				r.note(d, fmt.Sprintf("throttled to %.2g cores", cores))
			}
		}
	default:
		r.note(d, "logged")
	}
	return false
}

// afterExit applies the policy to the final counters, read once the cell
// is gone (err: that read failed). A deviation or lost events that the
// polls did not see in time, because the cell exited first, must still
// decide the call: under them the verdict is halted and the result
// withheld, exactly as if a poll had caught them. A failed read halts too.
func (r *running) afterExit(final monitor.Counters, err error) {
	r.final = r.score(final)
	if final.Kills > 0 {
		r.seccompKill, r.kills = true, final.SeccompKills
	}
	if r.stopped != notStopped {
		return // the kernel stopped it already, for a reason of its own
	}
	switch {
	case err != nil:
		r.halt(monitor.Deviation{Score: 1, Reasons: []string{"the monitor could not read the cell's final counters: " + err.Error()}}, "halted after exit (fail closed)")
	case final.Kills > 0:
		// A violation; classify says so.
	case final.Lost():
		r.halt(r.final, "halted after exit (fail closed: the monitor lost events)")
	case r.cell.Manifest.Monitor.Policy == manifest.PolicyHalt && r.final.Score >= r.cell.Manifest.Monitor.Threshold:
		r.halt(r.final, "halted after exit")
	default:
		return
	}
	r.stopped = stopHalt
}

// score judges counters against the baseline and what the contract
// declares (the entropy band), which holds even without a baseline.
func (r *running) score(c monitor.Counters) monitor.Deviation {
	x := monitor.Expect{Runtime: runtimeSyscalls()}
	x.Entropy = r.cell.Manifest.Monitor.Entropy
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

// note records the first deviation seen while the cell runs on.
func (r *running) note(d monitor.Deviation, action string) {
	if r.deviation == nil {
		r.deviation, r.action = &d, action
	}
}

// halt records why the monitor stops the cell; it replaces what was noted.
func (r *running) halt(d monitor.Deviation, action string) {
	r.deviation, r.action = &d, action
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
			if r.stopped != stopHalt && r.final.Score > r.deviation.Score {
				rep.Deviation = &r.final
			}
		} else if r.final.Deviant() {
			rep.Deviation, rep.Action = &r.final, "logged after exit"
		}
	}
	b, _ := json.Marshal(rep)
	return b
}

// classify turns how the cell ended into a verdict and a message: st are
// its cgroup's counters (serr: they could not be read), stdout what it
// wrote there.
func classify(o *outcome.Outcome, m *manifest.Manifest, output *manifest.Validator, r *running, exit sandbox.Exit, st sandbox.Stats, serr error, stdout *capWriter) {
	name := m.Name
	set := func(v outcome.Verdict, format string, args ...any) {
		o.Verdict, o.Message = v, fmt.Sprintf(format, args...)
	}
	switch {
	case exit.Signal == syscall.SIGSYS || r.seccompKill:
		// The cell itself, or any process of it, was killed by seccomp.
		v := &outcome.SyscallViolation{Nr: -1}
		if len(r.kills) > 0 {
			v.Nr, v.Syscall = int(r.kills[0].Nr), r.kills[0].Name
		}
		o.Violation = v
		switch {
		case v.Syscall != "":
			set(outcome.Violation, "cell %s was stopped: it used the undeclared syscall %s", name, v.Syscall)
		case r.watch == nil:
			_, why := r.k.MonitorStatus()
			set(outcome.Violation, "cell %s was stopped: it used an undeclared syscall (which one is unknown: the behaviour monitor is unavailable: %s)", name, why)
		default:
			set(outcome.Violation, "cell %s was stopped: it used an undeclared syscall (which one is unknown: the monitor saw no seccomp kill)", name)
		}
	case r.stopped == stopHalt:
		action, reasons := r.action, "it deviated from its baseline"
		if action == "" {
			action = "halted"
		}
		if r.deviation != nil && len(r.deviation.Reasons) > 0 {
			reasons = strings.Join(r.deviation.Reasons, "; ")
		}
		set(outcome.Halted, "cell %s was %s by the behaviour monitor: %s", name, action, reasons)
	case r.stopped == stopCancel:
		set(outcome.Cancelled, "the call was cancelled; cell %s was killed", name)
	case r.stopped == stopTimeout:
		set(outcome.Timeout, "cell %s was killed at its wall-clock deadline (limits.wall %s)", name, m.Limits.Wall)
	case r.stopped == stopOutput:
		set(outcome.OutputTooLarge, "cell %s wrote more than limits.output (%s) to stdout and was killed", name, m.Limits.Output)
	case stdout.Full():
		// It passed the cap and exited before the kernel could kill it: its
		// output is cut, never a result.
		set(outcome.OutputTooLarge, "cell %s wrote more than limits.output (%s) to stdout", name, m.Limits.Output)
	case serr != nil:
		// Without the cgroup's counters an OOM or pids-limit kill cannot
		// be told from a crash, nor a child's OOM kill from success.
		set(outcome.Internal, "cell %s ended (%s) but its resource counters could not be read, so the verdict is unknown: %v", name, exit, serr)
	case st.OOMKills > 0:
		set(outcome.OOM, "cell %s was killed at its memory limit (limits.memory %s)", name, m.Limits.Memory)
	case st.PidsLimitHits > 0 && (exit.Code != 0 || exit.Signal != 0):
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
			if err = output.Validate(res); err != nil {
				err = fmt.Errorf("does not match the output schema: %w", err)
			}
		}
		if err != nil {
			set(outcome.InvalidOutput, "cell %s returned invalid output: %v", name, err)
			return
		}
		o.Verdict, o.Result = outcome.OK, res
		if r.deviation != nil {
			o.Message = fmt.Sprintf("cell %s deviated from its baseline (%s)", name, r.action)
		}
	}
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

// progressForwarder hands the cell's fd-3 reports to a callback that may
// be slow or stuck (an MCP client that stopped reading its stream): reports
// wait in a small queue and are dropped when it is full, and nothing ever
// waits for the callback, so it cannot hold the call or its slot.
type progressForwarder struct {
	r         *os.File
	read      chan struct{} // closed once the reader has seen EOF
	delivered chan struct{} // closed once the queue is delivered (or abandoned)
	done      chan struct{} // closed by stop: deliver nothing more
}

// forwardProgress starts reading r (the cell's fd 3) and forwarding to
// emit (nil: read and drop).
func forwardProgress(r *os.File, emit func(Progress)) *progressForwarder {
	f := &progressForwarder{r: r, read: make(chan struct{}), delivered: make(chan struct{}), done: make(chan struct{})}
	queue := make(chan Progress, progressQueue)
	go func() {
		defer close(f.read)
		defer close(queue)
		var send func(Progress)
		if emit != nil {
			send = func(p Progress) {
				select {
				case queue <- p:
				default: // the callback is behind: drop
				}
			}
		}
		readProgress(r, send)
	}()
	go func() {
		defer close(f.delivered)
		for p := range queue {
			select {
			case <-f.done:
				return
			default:
			}
			emit(p)
		}
	}()
	return f
}

// stop waits, boundedly, for the reports still in the pipe and for the
// callback to take those queued, then makes sure no more are delivered and
// closes r. A stuck callback costs the call progressDeliver, no more.
func (f *progressForwarder) stop() {
	select {
	case <-f.read:
	case <-time.After(progressDrain):
		// A writer is still alive (the wipe was not clean): stop reading.
	}
	select {
	case <-f.delivered:
	case <-time.After(progressDeliver):
	}
	close(f.done)
	f.r.Close() // an os.Pipe end: this also ends a Read in progress
	<-f.read
}

// readProgress reads lines until EOF and passes each JSON report to emit
// (nil: reads and drops). A line longer than maxProgressLine is skipped to
// its end, never parsed in pieces.
func readProgress(r io.Reader, emit func(Progress)) {
	br := bufio.NewReaderSize(r, maxProgressLine)
	long := false // inside a line too long to keep
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = true
			continue
		}
		if long {
			long, line = false, nil // its tail
		}
		var p Progress
		if len(line) > 0 && emit != nil && n < maxProgress && json.Unmarshal(line, &p) == nil {
			n++
			emit(p)
		}
		if err != nil {
			return
		}
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

// Full reports whether more than the limit was written.
func (w *capWriter) Full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.full
}

// tailWriter keeps the last limit bytes written. It appends to a buffer of
// at most twice the limit and moves the tail to its front only when that
// is full, so each byte written is copied a bounded number of times
// however small the writes (shifting the whole buffer on every write
// would cost up to limits.stderr per pipe read).
type tailWriter struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit <= 0 {
		return n, nil
	}
	if len(p) > w.limit {
		p = p[len(p)-w.limit:]
	}
	if len(w.buf)+len(p) > 2*w.limit {
		keep := min(len(w.buf), w.limit-len(p)) // of the old tail, what is still needed
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-keep:]...)
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf[max(0, len(w.buf)-w.limit):])
}
