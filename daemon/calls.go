package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger"
)

// maxRunBody bounds a run request: the largest input any contract may
// accept (limits.input ≤ 256MiB) plus the envelope.
const maxRunBody = 256<<20 + 4096

func (d *Daemon) run(w http.ResponseWriter, r *http.Request, c caller) error {
	var req api.RunRequest
	if err := decodeJSON(r, maxRunBody, &req); err != nil {
		return err
	}
	if len(req.Input) == 0 {
		return badRequest("run: input is required (one JSON value)")
	}
	o, err := d.call(r.Context(), c, req.Cell, req.Input, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

// call runs one call through the Trust Kernel and brackets it with its
// audit events: call.begin, durable before anything is created, and
// call.end after the wipe, carrying the verdict and what the call used.
func (d *Daemon) call(ctx context.Context, c caller, ref string, input json.RawMessage, progress func(kernel.Progress)) (*outcome.Outcome, error) {
	// Resolved once: the cell whose tenant is checked is the cell that
	// runs. Another tenant's cell is "not found" for this caller.
	resolved, err := d.kernel.Resolve(ref)
	if err != nil {
		return nil, err
	}
	if !c.sees(resolved.Tenant) {
		return nil, fmt.Errorf("cell %s: %w", ref, ledger.ErrNotFound)
	}
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
			begin = ledger.Event{
				Type:        ledger.TypeCallBegin,
				TraceID:     traceID,
				Tenant:      c.Tenant,
				Caller:      c.ID,
				Cell:        cl.Manifest.Name,
				Identity:    cl.Identity,
				InputSHA256: inputSHA256,
			}
			return d.ledger.Append(ctx, &begin)
		},
		Observe: func(c monitor.Counters, d monitor.Deviation) { counters, dev = &c, d },
	})
	if err != nil {
		return nil, err
	}
	d.keepBlobs(ctx, c, cell, input, o)  // ledgerapi.go: inputs and outputs for replay
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
		d.log.Error("record call.end", "trace_id", traceID, "err", err)
		return nil, err
	}
	d.log.Info("call", "cell", o.Cell, "identity", o.Identity, "verdict", o.Verdict, "duration", o.Duration, "caller", c.ID, "trace_id", traceID, "wipe_clean", o.Wipe.Clean)
	return o, nil
}
