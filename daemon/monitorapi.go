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
//     first baseline, stored at x/baseline/<identity> in the very batch
//     that registers the identity, and attested by its cell.register event
//     (baseline_* attrs): there is no registered cell that lost its
//     baseline to a crash.
//   - Later calls that ended ok, lost no events, were judged against the
//     baseline and did not deviate at all (score < 1, whatever the
//     policy's threshold) are merged into it in memory if it covers them
//     (monitor.Baseline.Refine: no new syscall or pair); every refineEvery
//     such calls, and at shutdown, the baseline is recorded again
//     ("baseline.refine"). A crash loses at most refineEvery-1
//     refinements.
//   - A baseline is never modified in place: calls in flight keep scoring
//     against the one they started with.
//   - At most maxProfiles baselines are kept in memory; the least recently
//     used with nothing left to record are read again from the ledger when
//     needed.

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
	// maxProfiles bounds the baselines kept in memory (a few KiB each).
	maxProfiles = 256

	keyBaseline = ledger.PrefixExternal + "baseline/" // + identity

	typeBaselineRefine = "baseline.refine"
	typeAdviceBegin    = "advice.begin"
	typeAdviceEnd      = "advice.end"
)

// monitorState holds the baselines in use, by identity: a bounded cache
// of what the ledger stores, plus the refinements not yet recorded.
type monitorState struct {
	mu    sync.Mutex
	cache map[manifest.Identity]*profileEntry
	clock uint64 // counts uses, for least-recently-used eviction
}

// profileEntry is an identity's baseline. base is replaced, never changed.
type profileEntry struct {
	base      *monitor.Baseline // never nil in the cache
	probation int               // runs learnt at registration
	seq       uint64            // event that recorded the stored version
	pending   int               // merged runs not yet recorded
	recording bool              // a record is being appended
	used      uint64            // monitorState.clock at the last use
}

// get returns the cached entry of id and marks it used. s.mu must be held.
func (s *monitorState) get(id manifest.Identity) (*profileEntry, bool) {
	e, ok := s.cache[id]
	if ok {
		s.clock++
		e.used = s.clock
	}
	return e, ok
}

// add caches e as id's unless an entry is there already (which it
// returns), and evicts the least recently used entries with nothing to
// record beyond maxProfiles. s.mu must be held.
func (s *monitorState) add(id manifest.Identity, e *profileEntry) *profileEntry {
	if old, ok := s.get(id); ok {
		return old
	}
	if s.cache == nil {
		s.cache = map[manifest.Identity]*profileEntry{}
	}
	s.clock++
	e.used = s.clock
	s.cache[id] = e
	for len(s.cache) > maxProfiles {
		var victim manifest.Identity
		var oldest *profileEntry
		for vid, v := range s.cache {
			if v.pending == 0 && !v.recording && (oldest == nil || v.used < oldest.used) {
				victim, oldest = vid, v
			}
		}
		if oldest == nil {
			break // every entry has refinements to record: kept until they are
		}
		delete(s.cache, victim)
	}
	return e
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

// entry returns the profile of id: cached, or read from the ledger (and
// cached). An identity without a baseline gets an empty entry that is not
// cached: probation and advice runs, and cells without examples, must not
// fill the cache. d.mon.mu must be held.
func (d *Daemon) entry(id manifest.Identity) (*profileEntry, error) {
	if e, ok := d.mon.get(id); ok {
		return e, nil
	}
	raw, err := d.ledger.Get([]byte(keyBaseline + string(id)))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return &profileEntry{}, nil
	case err != nil:
		return nil, fmt.Errorf("read the baseline of %s: %w", id, err)
	}
	var s storedBaseline
	if err := json.Unmarshal(raw, &s); err != nil || s.Baseline == nil {
		// Fail closed: a cell whose baseline cannot be read does not run
		// without it.
		return nil, fmt.Errorf("%w: the stored baseline of %s does not decode: %v", ledger.ErrCorrupt, id, err)
	}
	return d.mon.add(id, &profileEntry{base: s.Baseline, probation: s.Probation, seq: s.Seq}), nil
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

// baselineAttrs describe a recorded baseline in the event that records it;
// prefix is "" for a baseline.refine event, "baseline_" on cell.register.
func baselineAttrs(attrs map[string]string, prefix string, b *monitor.Baseline, probation int) (map[string]string, error) {
	enc, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(enc)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs[prefix+"runs"] = strconv.Itoa(b.Runs)
	attrs[prefix+"probation_runs"] = strconv.Itoa(probation)
	attrs[prefix+"syscalls"] = strconv.Itoa(len(b.Syscalls))
	attrs[prefix+"pairs"] = strconv.Itoa(len(b.Pairs))
	attrs["baseline_sha256"] = hex.EncodeToString(sum[:])
	return attrs, nil
}

// storeBaseline returns the Mutation that stores the baseline id's
// probation learnt, for the cell.register event's batch
// (ledger.Register): the baseline is stored exactly when the identity is
// registered, and the event attests it. None without a baseline.
func storeBaseline(id manifest.Identity, b *monitor.Baseline) []ledger.Mutation {
	if b == nil {
		return nil
	}
	return []ledger.Mutation{func(tx *ledger.Txn) error {
		ev := tx.Event()
		attrs, err := baselineAttrs(ev.Attrs, "baseline_", b, b.Runs)
		if err != nil {
			return err
		}
		ev.Attrs = attrs
		v, err := json.Marshal(storedBaseline{Seq: ev.Seq, Probation: b.Runs, Baseline: b})
		if err != nil {
			return err
		}
		return tx.Set([]byte(keyBaseline+string(id)), v)
	}}
}

// baselineStored caches the baseline storeBaseline stored with the
// registration event seq.
func (d *Daemon) baselineStored(id manifest.Identity, b *monitor.Baseline, seq uint64) {
	if b == nil {
		return
	}
	d.mon.mu.Lock()
	defer d.mon.mu.Unlock()
	d.mon.add(id, &profileEntry{base: b, probation: b.Runs, seq: seq})
}

// recordBaseline appends a baseline.refine event that records e's
// current baseline, with the Mutation that stores it. The caller has set
// e.recording, which keeps e in the cache.
func (d *Daemon) recordBaseline(ctx context.Context, id manifest.Identity, e *profileEntry) error {
	d.mon.mu.Lock()
	b, probation, pending := e.base, e.probation, e.pending
	d.mon.mu.Unlock()
	defer func() {
		d.mon.mu.Lock()
		e.recording = false
		d.mon.mu.Unlock()
	}()

	attrs, err := baselineAttrs(nil, "", b, probation)
	if err != nil {
		return err
	}
	name, tenant := "", ""
	if rec, err := d.ledger.Cell(string(id)); err == nil {
		name, tenant = rec.Name, rec.Tenant
	}
	ev := &ledger.Event{Type: typeBaselineRefine, TraceID: ledger.NewTraceID(), Tenant: tenant, Cell: name, Identity: id, Attrs: attrs}
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
	d.log.Debug("baseline recorded", "cell", name, "identity", id, "runs", b.Runs, "seq", seq)
	return nil
}

// flushBaselines records the refinements not yet recorded (at shutdown,
// once no call runs any more).
func (d *Daemon) flushBaselines(ctx context.Context) {
	d.mon.mu.Lock()
	todo := map[manifest.Identity]*profileEntry{}
	for id, e := range d.mon.cache {
		if e.pending > 0 && !e.recording {
			e.recording = true
			todo[id] = e
		}
	}
	d.mon.mu.Unlock()
	for id, e := range todo {
		if err := d.recordBaseline(ctx, id, e); err != nil {
			d.log.Error("refined baseline lost at shutdown", "identity", id, "err", err)
		}
	}
}

// learn refines a cell's baseline from a call's final counters.
func (d *Daemon) learn(ctx context.Context, cell *kernel.Cell, o *outcome.Outcome, c *monitor.Counters, dev monitor.Deviation) {
	// Only a plain good run teaches: ok, complete counters, judged against
	// a baseline (one scored against none was never compared with what it
	// would teach) and not deviant at all. Identities without a probation
	// baseline learn nothing from production calls, whose inputs anyone
	// may choose.
	if cell == nil || o == nil || c == nil || o.Verdict != outcome.OK || dev.BaselineRuns == 0 || dev.Deviant() || c.Lost() || c.Kills > 0 {
		return
	}
	d.mon.mu.Lock()
	e, err := d.entry(cell.Identity)
	if err != nil || e.base == nil {
		d.mon.mu.Unlock()
		return
	}
	// Refine takes only a run the baseline covers: a novel syscall or pair
	// that weighed too little to deviate (runtime noise) is never learnt,
	// so it never stops counting, and the baseline never outgrows the
	// pairs a cell may record.
	nb := e.base.Clone()
	if err := nb.Refine(*c); err != nil {
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
		if err := d.recordBaseline(ctx, cell.Identity, e); err != nil {
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
		var name string
		if o.Violation != nil {
			name = o.Violation.Syscall
		}
		_, native := monitor.SyscallNumber(name)
		switch {
		case native:
			e.Syscall = name
			e.Msg = fmt.Sprintf("seccomp killed it for calling %s, which the manifest does not grant; add it to syscalls (tccctl cell advise drafts the block)", name)
		case name != "":
			e.Msg = fmt.Sprintf("seccomp killed it for making an %s (int 0x80), which no contract can grant: build the cell for x86_64 only", name)
		default:
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

func (d *Daemon) profile(w http.ResponseWriter, r *http.Request, c caller) error {
	cell, err := d.cellFor(c, r.PathValue("ref")) // catalog.go: hidden cells are not found
	if err != nil {
		return err
	}
	m := cell.Manifest
	avail, why := d.kernel.MonitorStatus()
	p := api.Profile{ // daemon/api/monitor.go
		Identity:        string(cell.Identity),
		Name:            m.Name,
		Monitor:         api.Feature{Available: avail, Reason: why},
		Policy:          string(m.Monitor.Policy),
		Threshold:       m.Monitor.Threshold,
		DeclaredEntropy: m.Monitor.Entropy,
		Syscalls:        []api.ProfileSyscall{},
	}
	var base *monitor.Baseline
	d.mon.mu.Lock()
	e, err := d.entry(cell.Identity)
	if err == nil {
		p.ProbationRuns, p.UnrecordedRuns, p.RecordedSeq = e.probation, e.pending, e.seq
		base = e.base
	}
	d.mon.mu.Unlock()
	if err != nil {
		return err
	}
	if b := base; b != nil {
		if p.Baseline, err = json.Marshal(b); err != nil {
			return err
		}
		p.Learned, p.Runs, p.DistinctPairs, p.Entropy, p.Max = true, b.Runs, len(b.Pairs), b.Entropy, (*api.Resources)(&b.Max)
		for nr, n := range b.Syscalls {
			p.Syscalls = append(p.Syscalls, api.ProfileSyscall{Name: monitor.SyscallName(nr), Nr: nr, Total: n, PerRun: float64(n) / float64(max(b.Runs, 1))})
		}
		slices.SortFunc(p.Syscalls, func(a, b api.ProfileSyscall) int {
			return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.Nr, b.Nr))
		})
	}
	writeJSON(w, http.StatusOK, p)
	return nil
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
		examples []api.AdviceExample
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
				ae := api.AdviceExample{Name: ex.Name, Run: run, Verdict: o.Verdict}
				if o.Verdict != outcome.OK {
					ae.Message = o.Message
				}
				if o.Violation != nil {
					ae.Syscall = o.Violation.Syscall
					// (An ia32 syscall has no x86_64 name: no contract grants it.)
					_, native := monitor.SyscallNumber(ae.Syscall)
					if _, forbidden := seccompprofiles.Forbidden(ae.Syscall); native && !forbidden && !slices.Contains(grant, ae.Syscall) {
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
						if !k.Compat {
							counts[k.Nr]++
						}
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
	adv := &api.Advice{Name: m.Name, Identity: string(cell.Identity), Rule: seccomp.AdviceRule, Granted: grant, Examples: examples,
		Observed: []api.ProfileSyscall{}, Missing: []string{}, Unneeded: []string{}}
	for nr, n := range counts {
		name := monitor.SyscallName(nr)
		used = append(used, name)
		adv.Observed = append(adv.Observed, api.ProfileSyscall{Name: name, Nr: nr, Total: n, PerRun: float64(n) / float64(len(examples))})
	}
	slices.SortFunc(adv.Observed, func(a, b api.ProfileSyscall) int { return strings.Compare(a.Name, b.Name) })
	draft := seccomp.Advise(used)
	adv.Syscalls, adv.YAML = (*api.AdviceSyscalls)(draft), adviceYAML(draft)
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
