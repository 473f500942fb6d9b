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
// the range: it signs a checkpoint covering everything appended so far,
// then writes each event with its inclusion proof in that checkpoint, and
// a trailer signed with the checkpoint key over every line. It returns the
// number of events written. On error the trailer is missing, so the
// partial output never verifies.
func (l *Ledger) Export(ctx context.Context, w io.Writer, opts ExportOptions) (int, error) {
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	cp, err := l.parseOwn(signed)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	to := opts.To
	if to == 0 || to > cp.Size {
		to = cp.Size
	}
	from := min(opts.From, to)
	bw := bufio.NewWriterSize(w, 64<<10)
	ew, err := audit.NewWriter(bw, l.signer, audit.Header{
		Origin: l.origin, TreeSize: cp.Size, From: from, To: to, Tenant: opts.Tenant,
		ExportedNS: time.Now().UnixNano(), Checkpoint: string(signed),
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for e, err := range l.Events(from, to, Filter{Tenant: opts.Tenant}) {
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return n, fmt.Errorf("export: %w", err)
			}
		}
		proof, err := l.ProveInclusion(e.Event.Seq, cp.Size)
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		if err := ew.Event(e.Raw, e.Event.Seq, proof); err != nil {
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
// event seq is in the log, against the latest checkpoint; it signs a new
// checkpoint first if the latest does not cover seq yet.
func (l *Ledger) InclusionProof(ctx context.Context, seq uint64) (*audit.InclusionProof, error) {
	if seq >= l.Size() {
		return nil, fmt.Errorf("prove event %d: %w (log size %d)", seq, ErrNotFound, l.Size())
	}
	cur := l.latest.Load()
	signed := cur.signed
	if seq >= cur.size {
		var err error
		if signed, err = l.Checkpoint(ctx); err != nil {
			return nil, fmt.Errorf("prove event %d: %w", seq, err)
		}
	}
	cp, err := l.parseOwn(signed)
	if err != nil {
		return nil, err
	}
	_, raw, err := l.Event(seq)
	if err != nil {
		return nil, err
	}
	proof, err := l.ProveInclusion(seq, cp.Size)
	if err != nil {
		return nil, err
	}
	return &audit.InclusionProof{
		Format: audit.FormatProof, Seq: seq, TreeSize: cp.Size,
		Event: raw, Proof: audit.Hashes(proof), Checkpoint: string(signed),
	}, nil
}

// ConsistencyProof returns the proof (tcc-consistency/v1) that the latest
// checkpoint's tree extends the tree of oldSize, with the stored
// checkpoint of oldSize when there is one.
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

// parseOwn parses one of the ledger's own signed checkpoints.
func (l *Ledger) parseOwn(signed []byte) (Checkpoint, error) {
	text, err := noteText(signed)
	if err != nil {
		return Checkpoint{}, err
	}
	return ParseCheckpoint(text)
}
