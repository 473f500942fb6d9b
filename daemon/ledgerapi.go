package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/ledger/audit"
	"github.com/trustcells/tcc/ledger/blobs"
)

// Blob store defaults (Config.BlobCap, Config.BlobRetention).
const (
	DefaultBlobCap       = 1 << 30
	DefaultBlobRetention = 30 * 24 * time.Hour
)

// auditState is what the audit API keeps beside the ledger.
type auditState struct {
	blobs    *blobs.Store
	verifier string // checkpoint verifier key, NAME+HASH+KEY
}

// ledgerRoutes mounts the control API of audit log queries, proofs, export
// and replay. Nothing here edits or deletes an event. Non-admins see only
// their tenant's events (visible).
func (d *Daemon) ledgerRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/ledger/key", d.handle(d.ledgerKey))
	mux.Handle("GET /v1/ledger/checkpoint", d.handle(d.ledgerCheckpoint))
	mux.Handle("POST /v1/ledger/checkpoint", d.handle(d.ledgerCheckpoint))
	mux.Handle("GET /v1/ledger/events", d.handle(d.ledgerEvents))
	mux.Handle("GET /v1/ledger/events/{seq}", d.handle(d.ledgerEvent))
	mux.Handle("GET /v1/ledger/events/{seq}/proof", d.handle(d.ledgerProof))
	mux.Handle("GET /v1/ledger/consistency", d.handle(d.ledgerConsistency))
	mux.Handle("GET /v1/ledger/export", d.handle(d.ledgerExport))
	mux.Handle("POST /v1/ledger/replay", d.handle(d.ledgerReplay))
}

// initAudit derives the checkpoint verifier key, opens the blob store,
// closes the calls a crash left open with call.aborted events, and prunes
// blobs in the background; the returned func stops the pruning.
func (d *Daemon) initAudit(ctx context.Context) (func(), error) {
	vkey, err := verifierOf(d.cfg.LedgerKey)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("ledger key %s: %w", d.cfg.LedgerKey, err)
	}
	if _, err := ledger.VerifyCheckpoint(d.ledger.LatestCheckpoint(), note.VerifierList(v)); err != nil {
		return nil, fmt.Errorf("ledger key %s does not verify the ledger's latest checkpoint (%v): the state directory was signed with another key; start with that key", d.cfg.LedgerKey, err)
	}
	d.audit.verifier = vkey

	bcap, keep := d.cfg.BlobCap, d.cfg.BlobRetention
	if bcap == 0 {
		bcap = DefaultBlobCap
	}
	if keep == 0 {
		keep = DefaultBlobRetention
	}
	d.audit.blobs, err = blobs.Open(blobs.Options{Dir: filepath.Join(d.cfg.StateDir, "blobs"), Cap: bcap, Retention: keep})
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
			Cell: b.Cell, Identity: b.Identity, InputSHA256: b.InputSHA256,
			Message: "daemon restarted", Ref: &b.Seq,
		}
		if _, err := d.ledger.Append(ctx, &ab); err != nil {
			return nil, fmt.Errorf("record call.aborted for call.begin %d: %w", b.Seq, err)
		}
		d.log.Warn("call interrupted by a daemon restart", "begin_seq", b.Seq, "aborted_seq", ab.Seq, "cell", b.Cell, "trace_id", b.TraceID)
	}

	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		every := min(max(keep/10, time.Minute), time.Hour)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if n, freed, err := d.audit.blobs.Prune(); err != nil {
					d.log.Warn("prune blobs", "err", err)
				} else if n > 0 {
					d.log.Info("pruned blobs", "removed", n, "bytes", freed)
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// verifierOf derives the verifier key from a note signer key file
// (PRIVATE+KEY+NAME+HASH+base64(1 ‖ Ed25519 seed)).
func verifierOf(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("ledger key: %w", err)
	}
	f := strings.SplitN(strings.TrimSpace(string(b)), "+", 5)
	if len(f) != 5 || f[0] != "PRIVATE" || f[1] != "KEY" {
		return "", fmt.Errorf("ledger key %s: not a note signer key", path)
	}
	k, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(k) != 1+ed25519.SeedSize || k[0] != 1 {
		return "", fmt.Errorf("ledger key %s: not an Ed25519 note signer key", path)
	}
	pub := ed25519.NewKeyFromSeed(k[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(f[2], pub)
}

// keepBlobs stores a call's input and output for replay, under the
// caller's tenant. A blob that cannot be kept only makes a later replay
// impossible, so failures are logged, not returned.
func (d *Daemon) keepBlobs(ctx context.Context, c caller, cell *kernel.Cell, input json.RawMessage, o *outcome.Outcome) {
	if d.audit.blobs == nil {
		return
	}
	for _, b := range [][]byte{input, o.Result} {
		if len(b) == 0 {
			continue
		}
		if _, err := d.audit.blobs.Put(c.Tenant, b); err != nil && !errors.Is(err, blobs.ErrDisabled) {
			d.log.Warn("keep call data for replay", "trace_id", o.TraceID, "err", err)
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

func (d *Daemon) ledgerCheckpoint(w http.ResponseWriter, r *http.Request, c caller) error {
	signed := d.ledger.LatestCheckpoint()
	if r.Method == http.MethodPost {
		var err error
		if signed, err = d.ledger.Checkpoint(r.Context()); err != nil {
			return err
		}
	}
	text, _, _ := strings.Cut(string(signed), "\n\n")
	cp, err := ledger.ParseCheckpoint(text + "\n")
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
// last n (default 20), or all from "from"; with follow, new ones as they
// are appended, until the client goes away or the daemon stops.
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
		if n, err = strconv.Atoi(s); err != nil || n < 0 {
			return badRequest("n: want a count of events")
		}
	}
	next := d.ledger.Size()
	var first []ledger.Entry
	if s := q.Get("from"); s != "" {
		if next, err = strconv.ParseUint(s, 10, 64); err != nil {
			return badRequest("from: want an event seq")
		}
	} else {
		if first, err = d.ledger.Last(n, f); err != nil {
			return err
		}
		if len(first) > 0 {
			next = max(next, first[len(first)-1].Event.Seq+1)
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	emit := func(e ledger.Entry) bool {
		if !visible(c, e.Event) {
			return true
		}
		_, err := w.Write(append(e.Raw, '\n'))
		return err == nil
	}
	for _, e := range first {
		if !emit(e) {
			return nil
		}
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	for {
		to := d.ledger.Size()
		if to > next {
			for e, err := range d.ledger.Events(next, to, f) {
				if err != nil || !emit(e) {
					return nil
				}
			}
			next = to
		}
		if rc.Flush() != nil || !follow {
			return nil
		}
		if d.ledger.Wait(r.Context(), next) != nil {
			return nil
		}
	}
}

// countingWriter tells whether anything reached the client, which decides
// whether an error can still be answered as JSON.
type countingWriter struct {
	w io.Writer
	n int64
}

func (cw *countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.n += int64(n)
	return n, err
}

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
	w.Header().Set("Content-Type", "application/x-ndjson")
	cw := &countingWriter{w: w}
	n, err := d.ledger.Export(r.Context(), cw, opts)
	if err != nil {
		if cw.n == 0 {
			return err
		}
		// The trailer is missing, so the partial export cannot verify.
		d.log.Error("export cut short", "caller", c.ID, "events", n, "err", err)
		return nil
	}
	d.log.Info("exported", "caller", c.ID, "tenant", opts.Tenant, "from", opts.From, "to", opts.To, "events", n)
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
			return &httpError{http.StatusConflict, api.CodeBadRequest, fmt.Errorf("the call begun at seq %d has not ended yet: replay it once its call.end is recorded", ev.Seq)}
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
		return &httpError{http.StatusConflict, api.CodeBadRequest, fmt.Errorf("the call begun at seq %d never finished (call.aborted at seq %d: %s): there is no output to compare with", beginSeq, endSeq, end.Message)}
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
	d.log.Info("replayed", "cell", begin.Cell, "identity", begin.Identity, "original", beginSeq, "match", out.Match, "determinism", out.Determinism, "caller", c.ID, "trace_id", trace)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
