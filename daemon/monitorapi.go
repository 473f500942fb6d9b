package daemon

// Behaviour profiles: the probation run at registration, baselines learnt
// from it and refined by later good calls, the profile endpoint, and
// advice on a capsule's syscall contract. docs/notes/004-monitor.md has
// the design; in short:
//
//   - Probation runs every example of a capsule probationRuns times before
//     it is registered, under its own contract. A seccomp kill refuses the
//     capsule naming the syscall, an output different from the example's
//     refuses it naming the example. The runs' counters are the identity's
//     first baseline ("baseline.learn" event, x/baseline/<identity>).
//   - Later calls that ended ok, lost no events and did not deviate at all
//     (score < 1, whatever the policy's threshold) are merged into it in
//     memory; every refineEvery such calls, and at shutdown, the baseline is
//     recorded again ("baseline.refine"). A crash loses at most
//     refineEvery-1 refinements, never the probation baseline.
//   - A baseline is never modified in place: calls in flight keep scoring
//     against the one they started with.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/kernel/seccomp"
	"github.com/trustcells/tcc/ledger"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

const (
	// probationRuns is how often probation runs each example: once proves
	// little for a runtime whose syscalls depend on timing.
	probationRuns = 3
	// probationParallel bounds the probation runs in flight (the machines
	// this targets have few cores; each run is a sandbox).
	probationParallel = 2
	// adviceRuns is how often advice runs each example.
	adviceRuns = 2
	// adviceRounds bounds the re-runs of advice after a kill on a syscall
	// the permissive profile only answers for probes (ioctl, prctl...).
	adviceRounds = 4
	// refineEvery is how many merged calls make the refined baseline worth
	// a ledger event.
	refineEvery = 16

	keyBaseline = ledger.PrefixExternal + "baseline/" // + identity

	typeBaselineLearn  = "baseline.learn"
	typeBaselineRefine = "baseline.refine"
	typeAdviceBegin    = "advice.begin"
	typeAdviceEnd      = "advice.end"
)

// monitorState holds the baselines in use, by identity.
type monitorState struct {
	mu    sync.Mutex
	cache map[manifest.Identity]*profileEntry
}

// profileEntry is an identity's baseline. base is replaced, never changed.
type profileEntry struct {
	base      *monitor.Baseline // nil: none learnt
	probation int               // runs learnt at registration
	seq       uint64            // event that recorded the stored version
	pending   int               // merged runs not yet recorded
	recording bool              // a record is being appended
}

// storedBaseline is the value at x/baseline/<identity>.
type storedBaseline struct {
	Seq       uint64            `json:"seq"`
	Probation int               `json:"probation_runs"`
	Baseline  *monitor.Baseline `json:"baseline"`
}

// monitorRoutes mounts the control API of behaviour profiles, probation and advice.
func (d *Daemon) monitorRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/cells/{ref}/profile", d.handle(d.profile))
	mux.Handle("POST /v1/advise", d.handle(admin(d.advise)))
}

// initMonitor starts behaviour profiles, probation and advice; the returned func stops it.
func (d *Daemon) initMonitor(ctx context.Context) (func(), error) {
	if ok, why := d.kernel.MonitorStatus(); !ok {
		d.log.Warn("behaviour monitor unavailable: no fingerprints, baselines or advice; calls record why", "reason", why)
	}
	return func() {}, nil
}

// entry returns the cached profile of id, reading it from the ledger on
// first use. d.mon.mu must be held.
func (d *Daemon) entry(id manifest.Identity) (*profileEntry, error) {
	if d.mon.cache == nil {
		d.mon.cache = map[manifest.Identity]*profileEntry{}
	}
	if e, ok := d.mon.cache[id]; ok {
		return e, nil
	}
	e := &profileEntry{}
	raw, err := d.ledger.Get([]byte(keyBaseline + string(id)))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read the baseline of %s: %w", id, err)
	default:
		var s storedBaseline
		if err := json.Unmarshal(raw, &s); err != nil || s.Baseline == nil {
			// Fail closed: a cell whose baseline cannot be read does not run
			// without it.
			return nil, fmt.Errorf("%w: the stored baseline of %s does not decode: %v", ledger.ErrCorrupt, id, err)
		}
		e.base, e.probation, e.seq = s.Baseline, s.Probation, s.Seq
	}
	d.mon.cache[id] = e
	return e, nil
}

// baseline is the stored baseline of an identity; nil if none.
func (d *Daemon) baseline(id manifest.Identity) (*monitor.Baseline, error) {
	d.mon.mu.Lock()
	defer d.mon.mu.Unlock()
	e, err := d.entry(id)
	if err != nil {
		return nil, err
	}
	return e.base, nil
}

// storeBaseline records the baseline learnt at registration.
func (d *Daemon) storeBaseline(ctx context.Context, id manifest.Identity, b *monitor.Baseline) error {
	if b == nil {
		return nil
	}
	d.mon.mu.Lock()
	e, err := d.entry(id)
	if err == nil {
		e.base, e.probation, e.pending = b, b.Runs, 0
		e.recording = true
	}
	d.mon.mu.Unlock()
	if err != nil {
		return err
	}
	return d.recordBaseline(ctx, id, typeBaselineLearn)
}

// recordBaseline appends an event that records id's current baseline,
// with the Mutation that stores it. The caller has set e.recording.
func (d *Daemon) recordBaseline(ctx context.Context, id manifest.Identity, typ string) error {
	d.mon.mu.Lock()
	e := d.mon.cache[id]
	b, probation, pending := e.base, e.probation, e.pending
	d.mon.mu.Unlock()
	defer func() {
		d.mon.mu.Lock()
		e.recording = false
		d.mon.mu.Unlock()
	}()

	enc, err := json.Marshal(b)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(enc)
	name, tenant := "", ""
	if rec, err := d.ledger.Cell(string(id)); err == nil {
		name, tenant = rec.Name, rec.Tenant
	}
	ev := &ledger.Event{
		Type:     typ,
		TraceID:  ledger.NewTraceID(),
		Tenant:   tenant,
		Cell:     name,
		Identity: id,
		Attrs: map[string]string{
			"runs":            strconv.Itoa(b.Runs),
			"probation_runs":  strconv.Itoa(probation),
			"syscalls":        strconv.Itoa(len(b.Syscalls)),
			"pairs":           strconv.Itoa(len(b.Pairs)),
			"baseline_sha256": hex.EncodeToString(sum[:]),
		},
	}
	var seq uint64
	store := func(tx *ledger.Txn) error {
		seq = tx.Event().Seq
		v, err := json.Marshal(storedBaseline{Seq: seq, Probation: probation, Baseline: b})
		if err != nil {
			return err
		}
		return tx.Set([]byte(keyBaseline+string(id)), v)
	}
	if _, err := d.ledger.Append(context.WithoutCancel(ctx), ev, store); err != nil {
		return fmt.Errorf("record the baseline of %s: %w", id, err)
	}
	d.mon.mu.Lock()
	e.seq = seq
	e.pending -= pending
	d.mon.mu.Unlock()
	d.log.Debug("baseline recorded", "cell", name, "identity", id, "type", typ, "runs", b.Runs, "seq", seq)
	return nil
}

// flushBaselines records the refinements not yet recorded (at shutdown,
// once no call runs any more).
func (d *Daemon) flushBaselines(ctx context.Context) {
	d.mon.mu.Lock()
	var ids []manifest.Identity
	for id, e := range d.mon.cache {
		if e.pending > 0 && !e.recording {
			e.recording = true
			ids = append(ids, id)
		}
	}
	d.mon.mu.Unlock()
	for _, id := range ids {
		if err := d.recordBaseline(ctx, id, typeBaselineRefine); err != nil {
			d.log.Error("refined baseline lost at shutdown", "identity", id, "err", err)
		}
	}
}

// learn refines a cell's baseline from a call's final counters.
func (d *Daemon) learn(ctx context.Context, cell *kernel.Cell, o *outcome.Outcome, c *monitor.Counters, dev monitor.Deviation) {
	// Only a plain good run teaches: ok, complete counters, not deviant at
	// all. Identities without a probation baseline learn nothing from
	// production calls, whose inputs anyone may choose.
	if cell == nil || o == nil || c == nil || o.Verdict != outcome.OK || dev.Deviant() || c.Lost() || c.Kills > 0 {
		return
	}
	d.mon.mu.Lock()
	e, err := d.entry(cell.Identity)
	if err != nil || e.base == nil {
		d.mon.mu.Unlock()
		return
	}
	nb := e.base.Clone()
	// A baseline must fit the pairs a cell may record, or no call could
	// be watched with it: past that it stops learning.
	if err := nb.Merge(*c); err != nil || len(nb.Pairs) > d.pairBudget() {
		d.mon.mu.Unlock()
		return
	}
	e.base = nb
	e.pending++
	record := e.pending >= refineEvery && !e.recording
	if record {
		e.recording = true
	}
	d.mon.mu.Unlock()
	if record {
		if err := d.recordBaseline(ctx, cell.Identity, typeBaselineRefine); err != nil {
			d.log.Error("cannot record a refined baseline; it is kept in memory", "cell", cell.Manifest.Name, "identity", cell.Identity, "err", err)
		}
	}
}

// pairBudget is the most syscall pairs a baseline may hold.
func (d *Daemon) pairBudget() int {
	if n := d.cfg.MonitorPairsPerCell; n > 0 {
		return int(n)
	}
	return monitor.DefaultPairsPerCell
}

// ProbationError says why a capsule's examples refused its registration.
type ProbationError struct {
	Cell    string
	Example string // examples[].name
	Run     int    // 1-based
	Verdict outcome.Verdict
	Syscall string // the undeclared syscall of a seccomp kill, if known
	Msg     string
}

func (e *ProbationError) Error() string {
	return fmt.Sprintf("probation of cell %s refused it: example %q (run %d of %d): %s", e.Cell, e.Example, e.Run, probationRuns, e.Msg)
}

// probation runs a capsule's examples before it is registered and returns
// the baseline learnt from them (nil without the monitor).
func (d *Daemon) probation(ctx context.Context, cell *kernel.Cell, caps *capsule.Capsule) (*monitor.Baseline, error) {
	m := cell.Manifest
	if len(m.Examples) == 0 {
		d.log.Warn("cell has no examples: no probation run and no baseline; the monitor judges only what is wrong for any cell", "cell", m.Name, "identity", cell.Identity)
		return nil, nil
	}
	type job struct {
		ex  int
		run int
	}
	type result struct {
		o   *outcome.Outcome
		c   *monitor.Counters
		dev monitor.Deviation
		err error
	}
	var jobs []job
	for i := range m.Examples {
		for r := 1; r <= probationRuns; r++ {
			jobs = append(jobs, job{i, r})
		}
	}
	results := make([]result, len(jobs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	for range probationParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j, res := jobs[i], &results[i]
				res.o, res.err = d.kernel.Call(ctx, kernel.Request{
					Resolved: cell,
					Input:    m.Examples[j.ex].Input,
					Observe:  func(c monitor.Counters, dev monitor.Deviation) { res.c, res.dev = &c, dev },
				})
				if res.err != nil || d.probationFailure(cell, j.ex, j.run, res.o, res.dev) != nil {
					cancel() // the first failure decides; stop the rest
				}
			}
		}()
	}
feed:
	for i := range jobs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()

	// Report the first failure in example order, not one the cancel caused.
	var runs []monitor.Counters
	for i, j := range jobs {
		res := results[i]
		switch {
		case res.o == nil && res.err == nil:
			continue // never started
		case res.err != nil:
			if errors.Is(res.err, context.Canceled) && ctx.Err() != nil {
				continue
			}
			return nil, fmt.Errorf("probation of cell %s: example %q: %w", m.Name, m.Examples[j.ex].Name, res.err)
		case res.o.Verdict == outcome.Cancelled:
			continue
		}
		if err := d.probationFailure(cell, j.ex, j.run, res.o, res.dev); err != nil {
			d.log.Info("probation refused a capsule", "cell", m.Name, "identity", cell.Identity, "err", err)
			return nil, &httpError{http.StatusUnprocessableEntity, api.CodeVerification, err}
		}
		if res.c != nil {
			runs = append(runs, *res.c)
		}
	}
	if err := ctx.Err(); err != nil && len(runs) < len(jobs) {
		return nil, fmt.Errorf("probation of cell %s: %w", m.Name, err)
	}
	if len(runs) == 0 {
		return nil, nil // no monitor: the examples still proved the contract covers them
	}
	b, err := monitor.Learn(runs...)
	if err != nil {
		// Fail closed: a baseline with holes would call normal runs deviant
		// or, worse, miss what it never saw.
		return nil, &httpError{http.StatusServiceUnavailable, api.CodeUnavailable,
			fmt.Errorf("probation of cell %s: the behaviour monitor could not learn a baseline (%v); register again", m.Name, err)}
	}
	if len(b.Pairs) > d.pairBudget() {
		return nil, &httpError{http.StatusUnprocessableEntity, api.CodeVerification,
			fmt.Errorf("probation of cell %s: its examples make %d distinct syscall pairs, more than the %d the behaviour monitor records per cell", m.Name, len(b.Pairs), d.pairBudget())}
	}
	d.log.Info("probation passed", "cell", m.Name, "identity", cell.Identity, "runs", b.Runs, "syscalls", len(b.Syscalls), "pairs", len(b.Pairs))
	return b, nil
}

// probationFailure says why one probation run refuses the capsule, or nil.
func (d *Daemon) probationFailure(cell *kernel.Cell, ex, run int, o *outcome.Outcome, dev monitor.Deviation) *ProbationError {
	if o == nil {
		return nil
	}
	m := cell.Manifest
	e := &ProbationError{Cell: m.Name, Example: m.Examples[ex].Name, Run: run, Verdict: o.Verdict}
	switch {
	case o.Verdict == outcome.Violation:
		if o.Violation != nil && o.Violation.Syscall != "" {
			e.Syscall = o.Violation.Syscall
			e.Msg = fmt.Sprintf("seccomp killed it for calling %s, which the manifest does not grant; add it to syscalls (tccctl cell advise drafts the block)", e.Syscall)
		} else {
			e.Msg = "seccomp killed it for a syscall the manifest does not grant (which one is unknown: " + o.Message + ")"
		}
	case o.Verdict == outcome.Cancelled:
		return nil
	case o.Verdict != outcome.OK:
		e.Msg = fmt.Sprintf("verdict %s: %s", o.Verdict, o.Message)
	case len(m.Examples[ex].Output) > 0 && !sameJSON(o.Result, m.Examples[ex].Output):
		e.Msg = fmt.Sprintf("the output differs from examples[%d].output: got %s, want %s", ex, clip(o.Result), clip(m.Examples[ex].Output))
	case dev.Deviant():
		// Without a baseline only the contract is judged here: lost events,
		// ia32 syscalls, output entropy outside the declared band.
		e.Msg = "the behaviour monitor found it at odds with its own contract: " + strings.Join(dev.Reasons, "; ")
	default:
		return nil
	}
	return e
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// Profile is the answer of GET /v1/cells/{ref}/profile. (Its twin for
// tccctl is in cmd/tccctl/profile.go: wire types belong in daemon/api.)
type Profile struct {
	Identity        string         `json:"identity"`
	Name            string         `json:"name"`
	Monitor         api.Feature    `json:"monitor"`
	Policy          string         `json:"policy"`
	Threshold       float64        `json:"threshold"`
	DeclaredEntropy *manifest.Band `json:"declared_entropy,omitempty"`
	// Learned is false when the identity has no baseline (no examples, or
	// registered while the monitor was unavailable).
	Learned        bool               `json:"learned"`
	ProbationRuns  int                `json:"probation_runs"`
	Runs           int                `json:"runs"`
	UnrecordedRuns int                `json:"unrecorded_runs"` // refinements not yet in the ledger
	RecordedSeq    uint64             `json:"recorded_seq,omitempty"`
	Syscalls       []ProfileSyscall   `json:"syscalls"`
	DistinctPairs  int                `json:"distinct_pairs"`
	Entropy        *monitor.Band      `json:"entropy,omitempty"`
	Max            *monitor.Resources `json:"max,omitempty"`
	Baseline       *monitor.Baseline  `json:"baseline,omitempty"`
}

// ProfileSyscall is one syscall of a baseline.
type ProfileSyscall struct {
	Name   string  `json:"name"`
	Nr     uint32  `json:"nr"`
	Total  uint64  `json:"total"`
	PerRun float64 `json:"per_run"`
}

func (d *Daemon) profile(w http.ResponseWriter, r *http.Request, c caller) error {
	cell, err := d.kernel.Resolve(r.PathValue("ref"))
	if err != nil {
		return err
	}
	if !c.sees(cell.Tenant) {
		return &httpError{http.StatusNotFound, api.CodeNotFound, fmt.Errorf("no cell %q", r.PathValue("ref"))}
	}
	m := cell.Manifest
	avail, why := d.kernel.MonitorStatus()
	p := Profile{
		Identity:        string(cell.Identity),
		Name:            m.Name,
		Monitor:         api.Feature{Available: avail, Reason: why},
		Policy:          string(m.Monitor.Policy),
		Threshold:       m.Monitor.Threshold,
		DeclaredEntropy: m.Monitor.Entropy,
		Syscalls:        []ProfileSyscall{},
	}
	d.mon.mu.Lock()
	e, err := d.entry(cell.Identity)
	if err == nil {
		p.ProbationRuns, p.UnrecordedRuns, p.RecordedSeq = e.probation, e.pending, e.seq
		p.Baseline = e.base
	}
	d.mon.mu.Unlock()
	if err != nil {
		return err
	}
	if b := p.Baseline; b != nil {
		p.Learned, p.Runs, p.DistinctPairs, p.Entropy, p.Max = true, b.Runs, len(b.Pairs), b.Entropy, &b.Max
		for nr, n := range b.Syscalls {
			p.Syscalls = append(p.Syscalls, ProfileSyscall{Name: monitor.SyscallName(nr), Nr: nr, Total: n, PerRun: float64(n) / float64(max(b.Runs, 1))})
		}
		slices.SortFunc(p.Syscalls, func(a, b ProfileSyscall) int {
			return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.Nr, b.Nr))
		})
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// Advice is the answer of POST /v1/advise.
type Advice struct {
	Name     string `json:"name"`
	Identity string `json:"identity"`
	Rule     string `json:"rule"`
	// Syscalls is the draft: the smallest groups + extra that allow what
	// the examples did (seccomp.Advise).
	Syscalls *seccomp.Advice `json:"syscalls"`
	// YAML is Syscalls as a manifest block.
	YAML string `json:"yaml"`
	// Observed is every syscall the examples made, with its count.
	Observed []ProfileSyscall `json:"observed"`
	// Missing are used syscalls the manifest as written does not grant;
	// Unneeded are its extra syscalls the examples never made.
	Missing  []string `json:"missing"`
	Unneeded []string `json:"unneeded"`
	// Granted are syscalls the permissive profile had to allow outright
	// after a kill on them (it only answers their probes otherwise).
	Granted  []string        `json:"granted,omitempty"`
	Examples []AdviceExample `json:"examples"`
}

// AdviceExample is how one run of an example went under the permissive profile.
type AdviceExample struct {
	Name    string          `json:"name"`
	Run     int             `json:"run"`
	Verdict outcome.Verdict `json:"verdict"`
	Message string          `json:"message,omitempty"`
	Syscall string          `json:"syscall,omitempty"` // of a seccomp kill
}

func (d *Daemon) advise(w http.ResponseWriter, r *http.Request, c caller) error {
	if ok, why := d.kernel.MonitorStatus(); !ok {
		return &httpError{http.StatusServiceUnavailable, api.CodeUnavailable, fmt.Errorf("advice watches the examples with the behaviour monitor, which is unavailable: %s", why)}
	}
	caps, err := readUpload(w, r) // register.go
	if err != nil {
		return err
	}
	m, err := caps.Manifest()
	if err != nil {
		return err
	}
	if len(m.Examples) == 0 {
		return badRequest("cell %s has no examples: advice runs them to see what it does; add examples to cell.yaml", m.Name)
	}
	// What Verify checks short of the signature: the files are the
	// manifest's, byte for byte.
	if err := m.CheckFiles(); err != nil {
		return &httpError{http.StatusUnprocessableEntity, api.CodeVerification, err}
	}
	files := caps.Files()
	if len(files) != len(m.Files) {
		return &httpError{http.StatusUnprocessableEntity, api.CodeVerification,
			fmt.Errorf("cell %s: the capsule has %d files and cell.yaml lists %d; run tccctl cell pack", m.Name, len(files), len(m.Files))}
	}
	for _, f := range files {
		got, _, err := d.ledger.PutObject(f.Open())
		if err != nil {
			return fmt.Errorf("store %s: %w", f.Path, err)
		}
		if want, ok := m.Files[f.Path]; !ok || want != got {
			return &httpError{http.StatusUnprocessableEntity, api.CodeVerification,
				fmt.Errorf("cell %s: file %s does not match cell.yaml's digest; run tccctl cell pack", m.Name, f.Path)}
		}
	}
	cell := &kernel.Cell{Identity: m.Identity(), Manifest: m}
	declared, err := seccomp.Compile(m.Syscalls)
	if err != nil {
		return err
	}

	trace := ledger.NewTraceID()
	begin := &ledger.Event{Type: typeAdviceBegin, TraceID: trace, Tenant: c.Tenant, Caller: c.ID, Cell: m.Name, Identity: cell.Identity,
		Attrs: map[string]string{"examples": strconv.Itoa(len(m.Examples)), "signed": strconv.FormatBool(len(caps.Signature()) > 0)}}
	// Unsigned code is about to run on this machine: durably say so first.
	if _, err := d.ledger.Append(r.Context(), begin); err != nil {
		return err
	}

	var (
		grant    []string
		counts   map[uint32]uint64
		examples []AdviceExample
	)
	for round := 1; ; round++ {
		profile, err := seccomp.Permissive(grant...)
		if err != nil {
			return err
		}
		counts, examples = map[uint32]uint64{}, nil
		var killedOn string
		for _, ex := range m.Examples {
			for run := 1; run <= adviceRuns; run++ {
				var got *monitor.Counters
				o, err := d.kernel.Call(r.Context(), kernel.Request{
					Resolved: cell, Input: ex.Input, Profile: profile, Unsigned: true,
					Observe: func(c monitor.Counters, _ monitor.Deviation) { got = &c },
				})
				if err != nil {
					return fmt.Errorf("advice for cell %s: example %q: %w", m.Name, ex.Name, err)
				}
				ae := AdviceExample{Name: ex.Name, Run: run, Verdict: o.Verdict}
				if o.Verdict != outcome.OK {
					ae.Message = o.Message
				}
				if o.Violation != nil {
					ae.Syscall = o.Violation.Syscall
					if _, forbidden := seccompprofiles.Forbidden(ae.Syscall); !forbidden && ae.Syscall != "" && !slices.Contains(grant, ae.Syscall) {
						killedOn = ae.Syscall
					}
				}
				examples = append(examples, ae)
				if got != nil {
					for nr, n := range got.Syscalls {
						counts[nr] += n
					}
					// seccomp stops a syscall before the histogram sees it; the
					// contract must face it all the same.
					for _, k := range got.SeccompKills {
						counts[k.Nr]++
					}
				}
			}
		}
		if killedOn == "" || round == adviceRounds {
			break
		}
		grant = append(grant, killedOn)
	}

	var used []string
	adv := &Advice{Name: m.Name, Identity: string(cell.Identity), Rule: seccomp.AdviceRule, Granted: grant, Examples: examples,
		Observed: []ProfileSyscall{}, Missing: []string{}, Unneeded: []string{}}
	for nr, n := range counts {
		name := monitor.SyscallName(nr)
		used = append(used, name)
		adv.Observed = append(adv.Observed, ProfileSyscall{Name: name, Nr: nr, Total: n, PerRun: float64(n) / float64(len(examples))})
	}
	slices.SortFunc(adv.Observed, func(a, b ProfileSyscall) int { return strings.Compare(a.Name, b.Name) })
	adv.Syscalls = seccomp.Advise(used)
	adv.YAML = adviceYAML(adv.Syscalls)
	allowed := declared.Allowed()
	for _, sc := range used {
		_, forbidden := seccompprofiles.Forbidden(sc)
		if !forbidden && !slices.Contains(allowed, sc) && !slices.Contains(adv.Syscalls.Unknown, sc) {
			adv.Missing = append(adv.Missing, sc)
		}
	}
	for _, sc := range m.Syscalls.Extra {
		if !slices.Contains(used, sc) {
			adv.Unneeded = append(adv.Unneeded, sc)
		}
	}
	slices.Sort(adv.Missing)

	end := &ledger.Event{Type: typeAdviceEnd, TraceID: trace, Tenant: c.Tenant, Caller: c.ID, Cell: m.Name, Identity: cell.Identity,
		Attrs: map[string]string{"groups": strings.Join(adv.Syscalls.Groups, " "), "extra": strings.Join(adv.Syscalls.Extra, " "), "runs": strconv.Itoa(len(examples))}}
	if _, err := d.ledger.Append(context.WithoutCancel(r.Context()), end); err != nil {
		return err
	}
	d.log.Info("advised", "cell", m.Name, "identity", cell.Identity, "groups", adv.Syscalls.Groups, "extra", adv.Syscalls.Extra, "caller", c.ID)
	writeJSON(w, http.StatusOK, adv)
	return nil
}

// adviceYAML renders an advice as a manifest's syscalls block.
func adviceYAML(a *seccomp.Advice) string {
	var b bytes.Buffer
	list := func(s []string) string {
		q := make([]string, len(s))
		for i, v := range s {
			q[i] = strconv.Quote(v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	b.WriteString("syscalls:\n")
	fmt.Fprintf(&b, "  groups: %s\n", list(a.Groups))
	fmt.Fprintf(&b, "  extra: %s\n", list(a.Extra))
	return b.String()
}
