package ledger

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/trustcells/tcc/ledger/audit"
)

// ExportOptions select what Export writes.
type ExportOptions struct {
	From uint64 // first seq
	To   uint64 // end of the range, exclusive; 0 means up to the checkpoint
	// Tenant, if set, exports only that tenant's events; the proofs reveal
	// only hashes of the others.
	Tenant string
}

// Export writes a tcc-audit/v1 export (package audit) of the events in
// the range: it takes the checkpoint covering everything appended so far,
// then writes each event with its inclusion proof in that checkpoint, and
// a trailer signed with the checkpoint key over every line. It returns the
// number of events written. Every event of the range is read and proven
// before it is written, also for a tenant export (which keeps those of the
// tenant), so that the ledger never signs a trailer over an event, or
// without an event, that its signed tree does not vouch for: a store
// altered outside tccd fails with ErrCorrupt. On error the trailer is
// missing, so the partial output never verifies.
func (l *Ledger) Export(ctx context.Context, w io.Writer, opts ExportOptions) (int, error) {
	cp, err := l.checkpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	if !l.acquire() {
		return 0, ErrClosed
	}
	defer l.release()
	to := opts.To
	if to == 0 || to > cp.size {
		to = cp.size
	}
	from := min(opts.From, to)
	bw := bufio.NewWriterSize(w, 64<<10)
	ew, err := audit.NewWriter(bw, l.signer, audit.Header{
		Origin: l.origin, TreeSize: cp.size, From: from, To: to, Tenant: opts.Tenant,
		ExportedNS: time.Now().UnixNano(), Checkpoint: string(cp.signed),
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for e, err := range l.proven(cp, from, to, Filter{Tenant: opts.Tenant}, false) {
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return n, fmt.Errorf("export: %w", err)
			}
		}
		if err := ew.Event(e.Raw, e.Event.Seq, e.proof); err != nil {
			return n, err
		}
		n++
	}
	if err := ew.Close(); err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}

// InclusionProof returns the self-contained proof (tcc-proof/v1) that
// event seq is in the log, against the latest checkpoint.
func (l *Ledger) InclusionProof(ctx context.Context, seq uint64) (*audit.InclusionProof, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	cp := l.latest.Load()
	if seq >= cp.size {
		return nil, fmt.Errorf("prove event %d: %w (log size %d)", seq, ErrNotFound, cp.size)
	}
	raw, err := getCopy(l.db, eventKey(seq))
	if err != nil {
		return nil, fmt.Errorf("prove event %d: %w", seq, err)
	}
	_, proof, err := l.leaf(l.db, cp, seq, raw)
	if err != nil {
		return nil, fmt.Errorf("prove event %d: %w", seq, err)
	}
	return &audit.InclusionProof{
		Format: audit.FormatProof, Seq: seq, TreeSize: cp.size,
		Event: raw, Proof: audit.Hashes(proof), Checkpoint: string(cp.signed),
	}, nil
}

// ConsistencyProof returns the proof (tcc-consistency/v1) that the latest
// checkpoint's tree extends the tree of oldSize, with the checkpoint kept
// for oldSize when there is one.
func (l *Ledger) ConsistencyProof(oldSize uint64) (*audit.ConsistencyProof, error) {
	latest := l.latest.Load()
	if oldSize == 0 || oldSize > latest.size {
		return nil, fmt.Errorf("consistency: %w: old size %d must be between 1 and the latest checkpoint's size %d", ErrInvalid, oldSize, latest.size)
	}
	proof, err := l.ProveConsistency(oldSize, latest.size)
	if err != nil {
		return nil, err
	}
	p := &audit.ConsistencyProof{
		Format: audit.FormatConsistency, OldSize: oldSize, NewSize: latest.size,
		NewCheckpoint: string(latest.signed), Proof: audit.Hashes(proof),
	}
	if old, err := l.CheckpointAt(oldSize); err == nil {
		p.OldCheckpoint = string(old)
	}
	return p, nil
}
