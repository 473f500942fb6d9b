package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/ledger/audit"
	"github.com/trustcells/tcc/ledger/blobs"
)

// Blob store defaults: tccd's --blob-cap and --blob-retention.
const (
	DefaultBlobCap       = 1 << 30
	DefaultBlobRetention = 30 * 24 * time.Hour
)

// Limits of the audit log's streams.
const (
	// maxTail bounds the events one tail request answers before following.
	maxTail = 10_000
	// eventBatch is how many events a stream reads from the ledger before
	// writing them, outside the ledger's iterator: a slow reader never
	// holds a ledger snapshot.
	eventBatch = 256
	// writeTimeout drops a client that accepts nothing of a stream for
	// this long.
	writeTimeout = 30 * time.Second
)

// auditState is what the audit API keeps beside the ledger.
type auditState struct {
	blobs      *blobs.Store
	verifier   string // checkpoint verifier key, NAME+HASH+KEY (daemon.go)
	keyWarning string // why the key's place weakens the evidence; "" if it does not
	exporting  sync.Mutex
}

// ledgerRoutes mounts the control API of audit log queries, proofs, export
// and replay. Nothing here edits or deletes an event. Non-admins see only
// their tenant's events (visible).
func (d *Daemon) ledgerRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/ledger/key", d.handle(d.ledgerKey))
	mux.Handle("GET /v1/ledger/checkpoint", d.handle(d.ledgerCheckpoint))
	mux.Handle("POST /v1/ledger/checkpoint", d.handle(admin(d.ledgerCheckpoint)))
	mux.Handle("GET /v1/ledger/events", d.handle(d.ledgerEvents))
	mux.Handle("GET /v1/ledger/events/{seq}", d.handle(d.ledgerEvent))
	mux.Handle("GET /v1/ledger/events/{seq}/proof", d.handle(d.ledgerProof))
	mux.Handle("GET /v1/ledger/consistency", d.handle(d.ledgerConsistency))
	mux.Handle("GET /v1/ledger/export", d.handle(d.ledgerExport))
	mux.Handle("POST /v1/ledger/replay", d.handle(d.ledgerReplay))
}

// initAudit warns when the checkpoint key lives on the state disk, opens
// the blob store, closes the calls a crash left open with call.aborted
// events, and prunes blobs in the background; the returned func stops the
// pruning. ledger.Open has already checked the stored log against its
// signed checkpoint with the key.
func (d *Daemon) initAudit(ctx context.Context) (func(), error) {
	if d.audit.keyWarning = keyWarning(d.cfg.StateDir, d.cfg.LedgerKey); d.audit.keyWarning != "" {
		d.log.Warn(d.audit.keyWarning, "ledger_key", d.cfg.LedgerKey, "state", d.cfg.StateDir)
	}
	var err error
	d.audit.blobs, err = blobs.Open(blobs.Options{Dir: filepath.Join(d.cfg.StateDir, "blobs"), Cap: d.cfg.BlobCap, Retention: d.cfg.BlobRetention})
	if err != nil {
		return nil, err
	}

	open, err := d.ledger.OpenCalls()
	if err != nil {
		return nil, err
	}
	for _, b := range open {
		ab := ledger.Event{
			Type: ledger.TypeCallAborted, TraceID: b.TraceID, Tenant: b.Tenant, Caller: b.Caller,
			Cell: b.Cell, Identity: b.Identity, InputSHA256: b.InputSHA256, Attrs: b.Attrs,
			Message: "daemon restarted", Ref: &b.Seq,
		}
		if _, err := d.ledger.Append(ctx, &ab); err != nil {
			return nil, fmt.Errorf("record call.aborted for call.begin %d: %w", b.Seq, err)
		}
		d.log.Warn("call interrupted by a daemon restart", "begin_seq", b.Seq, "aborted_seq", ab.Seq, logCell, b.Cell, logTrace, b.TraceID)
	}

	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		every := time.Hour
		if keep := d.cfg.BlobRetention; keep > 0 {
			every = min(max(keep/10, time.Minute), time.Hour)
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if n, freed, err := d.audit.blobs.Prune(); err != nil {
					d.log.Warn("prune blobs", logErr, err)
				} else if n > 0 {
					d.log.Info("pruned blobs", "removed", n, "bytes", freed)
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// keyWarning says what a checkpoint key inside the state directory means;
// "" when it is elsewhere. The default key lives there for convenience.
func keyWarning(stateDir, key string) string {
	resolve := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		return p
	}
	rel, err := filepath.Rel(resolve(stateDir), resolve(key))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	return "the ledger's checkpoint key is inside the state directory: whoever copies that disk can sign a rewritten log with it, and only auditors holding earlier checkpoints would notice (a consistency proof fails). Keep the key on another disk (--ledger-key) and hand checkpoints to auditors"
}

// ledgerStatus is the ledger's part of GET /v1/status.
func (d *Daemon) ledgerStatus() api.Ledger {
	return api.Ledger{Size: d.ledger.Size(), Checkpoint: string(d.ledger.LatestCheckpoint()), KeyWarning: d.audit.keyWarning}
}

// callTenant is the tenant a call's events and kept data belong to: the
// cell's, when the cell belongs to a tenant, so that the tenant's export
// holds every call of its cells whoever made it; otherwise the caller's.
// When the caller has another tenant, attrs records it as caller_tenant.
func callTenant(c caller, cell *kernel.Cell) (tenant string, attrs map[string]string) {
	tenant = cell.Tenant
	if tenant == "" {
		tenant = c.Tenant
	}
	if c.Tenant != "" && c.Tenant != tenant {
		attrs = map[string]string{"caller_tenant": c.Tenant}
	}
	return tenant, attrs
}

// keepBlobs stores a call's input and output for replay, under the
// tenant of its events. A blob that cannot be kept only makes a later
// replay impossible, so failures are logged, not returned.
func (d *Daemon) keepBlobs(tenant string, input json.RawMessage, o *outcome.Outcome) {
	if d.audit.blobs == nil {
		return
	}
	for _, b := range [][]byte{input, o.Result} {
		if len(b) == 0 {
			continue
		}
		if _, err := d.audit.blobs.Put(tenant, b); err != nil && !errors.Is(err, blobs.ErrDisabled) {
			d.log.Warn("keep call data for replay", logTrace, o.TraceID, logErr, err)
		}
	}
}

// traceKey carries a request's trace id into d.call, so that a replay's
// events share one trace.
type traceKey struct{}

func withTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// traceIDFor is the request's trace id, or a new one.
func traceIDFor(ctx context.Context) string {
	if id, ok := ctx.Value(traceKey{}).(string); ok && id != "" {
		return id
	}
	return ledger.NewTraceID()
}

// visible says whether c may read e: admins read everything, a tenant's
// callers their tenant's events, a caller without a tenant only its own
// tenant-less events.
func visible(c caller, e *ledger.Event) bool {
	switch {
	case c.Admin:
		return true
	case c.Tenant != "":
		return e.Tenant == c.Tenant
	default:
		return e.Tenant == "" && e.Caller == c.ID
	}
}

// filterFor narrows a request's filter to what c may read.
func filterFor(c caller, tenant string) (ledger.Filter, error) {
	switch {
	case c.Admin:
		return ledger.Filter{Tenant: tenant}, nil
	case tenant != "" && tenant != c.Tenant:
		return ledger.Filter{}, forbidden("you (%s) may read only your own tenant's events, not tenant %q", c.ID, tenant)
	case c.Tenant != "":
		return ledger.Filter{Tenant: c.Tenant}, nil
	default:
		return ledger.Filter{Caller: c.ID}, nil
	}
}

// event reads a stored event the caller may see; others' events are "not
// found", so their existence is not revealed.
func (d *Daemon) event(c caller, s string) (*ledger.Event, []byte, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, nil, badRequest("event seq %q is not a number", s)
	}
	ev, raw, err := d.ledger.Event(seq)
	if err == nil && !visible(c, ev) {
		err = fmt.Errorf("event %d: %w", seq, ledger.ErrNotFound)
	}
	return ev, raw, err
}

func writeRaw(w http.ResponseWriter, doc []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(doc, '\n'))
}

func (d *Daemon) ledgerKey(w http.ResponseWriter, r *http.Request, c caller) error {
	name, _, _ := strings.Cut(d.audit.verifier, "+")
	writeJSON(w, http.StatusOK, api.LedgerKey{Origin: name, Verifier: d.audit.verifier})
	return nil
}

// ledgerCheckpoint answers the latest checkpoint, which covers every
// durable event; POST (admins) also has tccd keep it, so that a later
// consistency proof from its size carries it.
func (d *Daemon) ledgerCheckpoint(w http.ResponseWriter, r *http.Request, c caller) error {
	signed := d.ledger.LatestCheckpoint()
	if r.Method == http.MethodPost {
		var err error
		if signed, err = d.ledger.Checkpoint(r.Context()); err != nil {
			return err
		}
	}
	cp, err := audit.UnverifiedCheckpoint(signed) // the ledger's own, verified at Open or signed since
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LedgerCheckpoint{
		Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Hash[:]), Checkpoint: string(signed),
	})
	return nil
}

func (d *Daemon) ledgerEvent(w http.ResponseWriter, r *http.Request, c caller) error {
	_, raw, err := d.event(c, r.PathValue("seq"))
	if err != nil {
		return err
	}
	writeRaw(w, raw)
	return nil
}

func (d *Daemon) ledgerProof(w http.ResponseWriter, r *http.Request, c caller) error {
	ev, _, err := d.event(c, r.PathValue("seq"))
	if err != nil {
		return err
	}
	p, err := d.ledger.InclusionProof(r.Context(), ev.Seq)
	if err != nil {
		return err
	}
	doc, err := audit.Marshal(p)
	if err != nil {
		return err
	}
	writeRaw(w, doc)
	return nil
}

func (d *Daemon) ledgerConsistency(w http.ResponseWriter, r *http.Request, c caller) error {
	old, err := strconv.ParseUint(r.URL.Query().Get("old"), 10, 64)
	if err != nil {
		return badRequest("old: want the size of an earlier checkpoint")
	}
	p, err := d.ledger.ConsistencyProof(old)
	if err != nil {
		return err
	}
	doc, err := audit.Marshal(p)
	if err != nil {
		return err
	}
	writeRaw(w, doc)
	return nil
}

// ledgerEvents streams matching events, one stored event per line: the
// last n (default 20, at most maxTail), or all from "from"; with follow,
// new ones as they are appended, until the client goes away or the daemon
// stops. Events are read from the ledger in batches and written outside
// its iterator, each write with a deadline.
func (d *Daemon) ledgerEvents(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	f, err := filterFor(c, q.Get("tenant"))
	if err != nil {
		return err
	}
	f.Cell, f.TraceID = q.Get("cell"), q.Get("trace")
	if t := q.Get("type"); t != "" {
		f.Types = strings.Split(t, ",")
	}
	n := 20
	if s := q.Get("n"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > maxTail {
			return badRequest("n: want a count of events from 0 to %d; use from=SEQ to read more", maxTail)
		}
	}
	next := d.ledger.Size()
	var batch []ledger.Entry
	if s := q.Get("from"); s != "" {
		if next, err = strconv.ParseUint(s, 10, 64); err != nil {
			return badRequest("from: want an event seq")
		}
	} else {
		if batch, err = d.ledger.Last(n, f); err != nil {
			return err
		}
		if len(batch) > 0 {
			next = max(next, batch[len(batch)-1].Event.Seq+1)
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	dw := newDeadlineWriter(w)
	send := func(entries []ledger.Entry) bool {
		for _, e := range entries {
			if !visible(c, e.Event) {
				continue
			}
			if _, err := dw.Write(append(e.Raw, '\n')); err != nil {
				return false
			}
		}
		return dw.flush() == nil
	}
	if !send(batch) {
		return nil // the client went away
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	for {
		for to := d.ledger.Size(); next < to; {
			if batch, next, err = d.eventBatch(next, to, f); err != nil {
				d.abortStream(r, c, "event stream", err)
			}
			if !send(batch) {
				return nil
			}
		}
		if !follow || d.ledger.Wait(r.Context(), next) != nil {
			return nil
		}
	}
}

// eventBatch reads up to eventBatch matching events of [from, to) and
// says where the next batch starts.
func (d *Daemon) eventBatch(from, to uint64, f ledger.Filter) ([]ledger.Entry, uint64, error) {
	var out []ledger.Entry
	for e, err := range d.ledger.Events(from, to, f) {
		if err != nil {
			return nil, from, err
		}
		if out = append(out, e); len(out) == eventBatch {
			return out, e.Event.Seq + 1, nil
		}
	}
	return out, to, nil
}

// abortStream ends a response whose status has been sent: the client sees
// a broken stream, never a clean end that would pass for complete.
func (d *Daemon) abortStream(r *http.Request, c caller, what string, err error) {
	lvl := slog.LevelError
	if r.Context().Err() != nil {
		lvl = slog.LevelInfo // the client went away, or tccd is stopping
	}
	d.log.Log(r.Context(), lvl, what+" cut short", logPath, r.URL.Path, logCaller, c.ID, logErr, err)
	panic(http.ErrAbortHandler)
}

// deadlineWriter gives every write of a streamed response writeTimeout,
// so a client that stops reading is dropped rather than pinning the
// handler; it counts what reached the client.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	n  int64
}

func newDeadlineWriter(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w)}
}

func (dw *deadlineWriter) Write(b []byte) (int, error) {
	_ = dw.rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // unsupported: no deadline
	n, err := dw.w.Write(b)
	dw.n += int64(n)
	return n, err
}

func (dw *deadlineWriter) flush() error {
	_ = dw.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return dw.rc.Flush()
}

// ledgerExport streams an export. One runs at a time: each reads and
// proves every event of its range.
func (d *Daemon) ledgerExport(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	var opts ledger.ExportOptions
	for _, p := range []struct {
		name string
		v    *uint64
	}{{"from", &opts.From}, {"to", &opts.To}} {
		if s := q.Get(p.name); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return badRequest("%s: want an event seq", p.name)
			}
			*p.v = v
		}
	}
	f, err := filterFor(c, q.Get("tenant"))
	if err != nil {
		return err
	}
	if f.Caller != "" {
		return forbidden("you (%s) have no tenant: an export holds a tenant's events or the whole log, which is for admins", c.ID)
	}
	opts.Tenant = f.Tenant
	if !d.audit.exporting.TryLock() {
		return &httpError{http.StatusServiceUnavailable, api.CodeBusy, errors.New("another export is running; retry when it has finished")}
	}
	defer d.audit.exporting.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	dw := newDeadlineWriter(w)
	n, err := d.ledger.Export(r.Context(), dw, opts)
	if err != nil {
		if dw.n == 0 {
			return err
		}
		d.abortStream(r, c, "export", err) // the trailer is missing, so it cannot verify either
	}
	d.log.Info("exported", logCaller, c.ID, logTenant, opts.Tenant, "from", opts.From, "to", opts.To, "events", n)
	return nil
}

// ledgerReplay runs a recorded call again: the same identity (pinned, even
// if the head moved), the same input, a fresh sandbox, through d.call so
// the replay is itself a call with its begin and end; then it records a
// call.replay event comparing the two.
func (d *Daemon) ledgerReplay(w http.ResponseWriter, r *http.Request, c caller) error {
	var req api.ReplayRequest
	if err := decodeJSON(r, maxJSONBody, &req); err != nil {
		return err
	}
	ev, _, err := d.event(c, strconv.FormatUint(req.Seq, 10))
	if err != nil {
		return err
	}
	var beginSeq, endSeq uint64
	switch ev.Type {
	case ledger.TypeCallBegin:
		beginSeq = ev.Seq
		if endSeq, err = d.ledger.EndOf(ev.Seq); errors.Is(err, ledger.ErrNotFound) {
			return &httpError{http.StatusConflict, api.CodeConflict, fmt.Errorf("the call begun at seq %d has not ended yet: replay it once its call.end is recorded", ev.Seq)}
		} else if err != nil {
			return err
		}
	case ledger.TypeCallEnd, ledger.TypeCallAborted:
		if ev.Ref == nil {
			return badRequest("event %d (%s) does not name its call.begin; it cannot be replayed", ev.Seq, ev.Type)
		}
		beginSeq, endSeq = *ev.Ref, ev.Seq
	default:
		return badRequest("event %d is a %s event; replay takes the seq of a call.begin or call.end", ev.Seq, ev.Type)
	}
	begin, _, err := d.ledger.Event(beginSeq)
	if err != nil {
		return err
	}
	end, _, err := d.ledger.Event(endSeq)
	if err != nil {
		return err
	}
	if end.Type == ledger.TypeCallAborted {
		return &httpError{http.StatusConflict, api.CodeConflict, fmt.Errorf("the call begun at seq %d never finished (call.aborted at seq %d: %s): there is no output to compare with", beginSeq, endSeq, end.Message)}
	}
	if rev, err := d.ledger.Revoked(begin.Identity); err != nil {
		return err
	} else if rev {
		return &httpError{http.StatusConflict, api.CodeRevoked, fmt.Errorf("cell %s %s is revoked: a revoked identity is never run again, so the call at seq %d cannot be replayed", begin.Cell, begin.Identity, beginSeq)}
	}
	rec, err := d.ledger.Cell(string(begin.Identity))
	if err != nil {
		return err
	}
	m, err := manifest.Parse(rec.Manifest)
	if err != nil {
		return fmt.Errorf("%w: the stored manifest of %s does not parse: %v", ledger.ErrCorrupt, rec.Identity, err)
	}
	input, err := d.audit.blobs.Get(begin.Tenant, begin.InputSHA256)
	if errors.Is(err, blobs.ErrNotFound) {
		return &httpError{http.StatusGone, api.CodeEvicted, fmt.Errorf("the input of the call at seq %d (sha256:%s) is no longer kept: it was evicted from the blob store (--blob-cap, --blob-retention) or never kept, so the call cannot be replayed", beginSeq, begin.InputSHA256)}
	} else if err != nil {
		return err
	}

	trace := ledger.NewTraceID()
	ctx := withTraceID(r.Context(), trace)
	rc := c
	rc.Tenant = begin.Tenant // the replay belongs to the original's tenant; the caller is who asked
	o, err := d.call(ctx, rc, string(begin.Identity), input, nil)
	if err != nil {
		return err
	}
	out := api.Replay{
		TraceID: trace, Cell: begin.Cell, Identity: string(begin.Identity), InputSHA256: begin.InputSHA256,
		Original:    api.ReplayCall{BeginSeq: beginSeq, EndSeq: endSeq, Verdict: end.Verdict, OutputSHA256: end.OutputSHA256},
		Replay:      api.ReplayCall{BeginSeq: o.BeginSeq, EndSeq: o.EndSeq, Verdict: string(o.Verdict)},
		Determinism: api.Deterministic,
		Outcome:     o,
	}
	if len(o.Result) > 0 {
		sum := sha256.Sum256(o.Result)
		out.Replay.OutputSHA256 = hex.EncodeToString(sum[:])
	}
	for _, n := range m.Nondeterminism {
		out.Nondeterminism = append(out.Nondeterminism, string(n))
	}
	if len(out.Nondeterminism) > 0 {
		out.Determinism = api.NondeterministicByContract
	}
	out.Match = out.Replay.Verdict == out.Original.Verdict && out.Replay.OutputSHA256 == out.Original.OutputSHA256
	switch {
	case out.Match:
		out.Message = fmt.Sprintf("replay of %s on the same input reproduced the call at seq %d: verdict %s, same output", begin.Cell, beginSeq, o.Verdict)
	case out.Determinism == api.NondeterministicByContract:
		out.Message = fmt.Sprintf("replay differs from the call at seq %d, as %s may: it declares nondeterminism (%s)", beginSeq, begin.Cell, strings.Join(out.Nondeterminism, ", "))
	default:
		out.Message = fmt.Sprintf("replay did NOT reproduce the call at seq %d: verdict %s (was %s), output %s (was %s); %s declares no nondeterminism",
			beginSeq, o.Verdict, end.Verdict, orNone(out.Replay.OutputSHA256), orNone(end.OutputSHA256), begin.Cell)
	}
	rev := ledger.Event{
		Type: ledger.TypeCallReplay, TraceID: trace, Tenant: begin.Tenant, Caller: c.ID,
		Cell: begin.Cell, Identity: begin.Identity, InputSHA256: begin.InputSHA256,
		OutputSHA256: out.Replay.OutputSHA256, Verdict: string(o.Verdict), Message: out.Message, Ref: &beginSeq,
		Attrs: map[string]string{
			"original_end": strconv.FormatUint(endSeq, 10),
			"replay_begin": strconv.FormatUint(o.BeginSeq, 10),
			"replay_end":   strconv.FormatUint(o.EndSeq, 10),
			"match":        strconv.FormatBool(out.Match),
			"determinism":  out.Determinism,
		},
	}
	if out.Seq, err = d.ledger.Append(context.WithoutCancel(ctx), &rev); err != nil {
		return fmt.Errorf("record call.replay: %w", err)
	}
	d.log.Info("replayed", logCell, begin.Cell, logIdentity, begin.Identity, "original", beginSeq, "match", out.Match, "determinism", out.Determinism, logCaller, c.ID, logTrace, trace)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
