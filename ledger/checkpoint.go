package ledger

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// signCheckpoint signs the tree of the given size and adds it to b under
// c/<size>.
func (l *Ledger) signCheckpoint(b *pebble.Batch, size uint64, hr tlog.HashReader) (*storedCheckpoint, error) {
	th, err := tlog.TreeHash(int64(size), hr)
	if err != nil {
		return nil, fmt.Errorf("tree hash at %d: %w", size, err)
	}
	text := Checkpoint{Origin: l.origin, Size: size, Hash: th}.Text()
	signed, err := note.Sign(&note.Note{Text: text}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	if err := b.Set(cpKey(size), signed, nil); err != nil {
		return nil, err
	}
	return &storedCheckpoint{size: size, hash: th, signed: signed}, nil
}

// Checkpoint returns a signed checkpoint covering every event appended
// before the call, signing and storing a new one unless the latest already
// does. Concurrent calls share one signature and one sync.
func (l *Ledger) Checkpoint(ctx context.Context) ([]byte, error) {
	res, err := l.submit(ctx, &request{cp: true})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return res.cp, nil
}

// LatestCheckpoint returns the newest signed checkpoint. One always exists
// after Open, covering at least every event durable at that time.
func (l *Ledger) LatestCheckpoint() []byte {
	return bytes.Clone(l.latest.Load().signed)
}

// CheckpointAt returns the signed checkpoint stored for a tree of exactly
// size events, or ErrNotFound.
func (l *Ledger) CheckpointAt(size uint64) ([]byte, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	v, err := getCopy(l.db, cpKey(size))
	if err != nil {
		return nil, fmt.Errorf("checkpoint at size %d: %w", size, err)
	}
	return v, nil
}

// ProveInclusion proves that event seq is leaf seq of the tree of the
// given size (any size up to Size, usually that of a signed checkpoint).
func (l *Ledger) ProveInclusion(seq, size uint64) (tlog.RecordProof, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	if seq >= size || size > l.Size() {
		return nil, fmt.Errorf("prove inclusion of %d in tree of size %d: %w: need seq < size <= %d", seq, size, ErrInvalid, l.Size())
	}
	p, err := tlog.ProveRecord(int64(size), int64(seq), l.dbHashes())
	if err != nil {
		return nil, fmt.Errorf("prove inclusion of %d in tree of size %d: %w", seq, size, err)
	}
	return p, nil
}

// ProveConsistency proves that the tree of oldSize is a prefix of the tree
// of newSize.
func (l *Ledger) ProveConsistency(oldSize, newSize uint64) (tlog.TreeProof, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	if oldSize == 0 || oldSize > newSize || newSize > l.Size() {
		return nil, fmt.Errorf("prove consistency of %d with %d: %w: need 0 < old <= new <= %d", oldSize, newSize, ErrInvalid, l.Size())
	}
	p, err := tlog.ProveTree(int64(newSize), int64(oldSize), l.dbHashes())
	if err != nil {
		return nil, fmt.Errorf("prove consistency of %d with %d: %w", oldSize, newSize, err)
	}
	return p, nil
}
