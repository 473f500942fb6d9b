package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// run is POST /v1/cells/{ref}/run: the body is the input, one JSON value.
// The cell is resolved and the caller's scopes checked before a byte of the
// body is read, which is then capped at the cell's limits.input and counted
// against the daemon-wide budget of inputs held in flight.
func (d *Daemon) run(w http.ResponseWriter, r *http.Request, c caller) error {
	cell, err := d.cellFor(c, r.PathValue("ref")) // catalog.go
	if err != nil {
		return err
	}
	if err := mayCall(c, cell); err != nil {
		return err
	}
	m := cell.Manifest
	tooBig := func() error {
		return tooLarge("input for cell %s: more than limits.input (%s), the largest input its contract accepts", m.Name, m.Limits.Input)
	}
	limit := int64(m.Limits.Input)
	switch {
	case r.ContentLength > limit:
		return tooBig()
	case r.ContentLength >= 0:
		limit = r.ContentLength // what a body of known length needs, no more
	}
	if !d.bodies.take(limit) {
		return &httpError{http.StatusServiceUnavailable, api.CodeBusy, errors.New("tccd holds as many call inputs as it may right now; retry shortly")}
	}
	defer d.bodies.give(limit)
	input, err := readBody(w, r, limit, tooBig)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(input)) == 0 {
		return badRequest("run: the request body is the input, one JSON value; it is empty")
	}
	o, err := d.callCell(r.Context(), c, cell, input, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

// mayCall checks the scopes a call of cell needs: tools:call, and
// cells:actuate for an actuate-phase cell. Every path that runs a cell for
// a caller (the control API, MCP, replay) goes through d.call or run, and so
// through this, against the cell that will run.
func mayCall(c caller, cell *kernel.Cell) error {
	if !c.Has(mcp.ScopeToolsCall) {
		return &kindError{forbidden("calling cell %s needs scope %s, which %s does not hold", cell.Manifest.Name, mcp.ScopeToolsCall, c.ID), mcp.ErrForbidden}
	}
	if cell.Manifest.Phase == manifest.PhaseActuate && !c.Has(mcp.ScopeActuate) {
		return &kindError{forbidden("cell %s is an actuate-phase cell: calling it needs scope %s, which %s does not hold", cell.Manifest.Name, mcp.ScopeActuate, c.ID), mcp.ErrForbidden}
	}
	return nil
}

// call runs one call of the cell ref names for c (cellFor, mayCall), as
// callCell does.
func (d *Daemon) call(ctx context.Context, c caller, ref string, input json.RawMessage, progress func(kernel.Progress)) (*outcome.Outcome, error) {
	cell, err := d.cellFor(c, ref)
	if err != nil {
		return nil, err
	}
	if err := mayCall(c, cell); err != nil {
		return nil, err
	}
	return d.callCell(ctx, c, cell, input, progress)
}

// callCell runs one call of a resolved cell through the Trust Kernel and
// brackets it with its audit events: call.begin, durable before anything
// is created, and call.end after the wipe, carrying the verdict and what
// the call used. The caller must have checked cellFor and mayCall.
func (d *Daemon) callCell(ctx context.Context, c caller, resolved *kernel.Cell, input json.RawMessage, progress func(kernel.Progress)) (*outcome.Outcome, error) {
	if !d.work.enter() { // serve.go: daemon.stop waits for calls in flight
		return nil, errStopping
	}
	defer d.work.leave()
	traceID := traceIDFor(ctx) // ledgerapi.go: a replay passes its own
	var (
		begin    ledger.Event
		cell     *kernel.Cell
		counters *monitor.Counters
		dev      monitor.Deviation
	)
	o, err := d.kernel.Call(ctx, kernel.Request{
		Resolved: resolved,
		Input:    input,
		TraceID:  traceID,
		Progress: progress,
		Begin: func(ctx context.Context, cl *kernel.Cell, inputSHA256 string) (uint64, error) {
			cell = cl
			tenant, attrs := callTenant(c, cl) // ledgerapi.go: the cell's tenant, else the caller's
			begin = ledger.Event{
				Type:        ledger.TypeCallBegin,
				TraceID:     traceID,
				Tenant:      tenant,
				Attrs:       attrs,
				Caller:      c.ID,
				Cell:        cl.Manifest.Name,
				Identity:    cl.Identity,
				InputSHA256: inputSHA256,
			}
			return d.ledger.Append(ctx, &begin)
		},
		Observe: func(got monitor.Counters, worst monitor.Deviation) { counters, dev = &got, worst },
	})
	if err != nil {
		return nil, err
	}
	d.keepBlobs(begin.Tenant, input, o)  // ledgerapi.go: inputs and outputs for replay
	d.learn(ctx, cell, o, counters, dev) // monitorapi.go: refine the baseline
	end := begin
	end.Seq, end.TimeNS, end.Type = 0, 0, ledger.TypeCallEnd
	end.Ref = &begin.Seq // closes the call: the ledger refuses a second end
	end.Verdict, end.Message, end.Monitor = string(o.Verdict), o.Message, o.Monitor
	if len(o.Result) > 0 {
		sum := sha256.Sum256(o.Result)
		end.OutputSHA256 = hex.EncodeToString(sum[:])
	}
	end.Usage = &ledger.Usage{WallNS: int64(o.Duration), CPUNS: int64(o.CPU), PeakMemoryBytes: o.PeakMemory, ExitCode: o.ExitCode, Signal: o.Signal}
	if o.Violation != nil {
		end.Violations = []string{o.Violation.Syscall}
	}
	end.Wipe = &ledger.Wipe{Clean: o.Wipe.Clean, Leftovers: o.Wipe.Leftovers, ElapsedNS: int64(o.Wipe.Elapsed)}
	// The call happened: record its end even if the caller went away.
	if o.EndSeq, err = d.ledger.Append(context.WithoutCancel(ctx), &end); err != nil {
		d.log.Error("record call.end", logTrace, traceID, logErr, err)
		return nil, err
	}
	d.log.Info("call", logCell, o.Cell, logIdentity, o.Identity, "verdict", o.Verdict, "duration", o.Duration, logCaller, c.ID, logTrace, traceID, "wipe_clean", o.Wipe.Clean)
	return o, nil
}
