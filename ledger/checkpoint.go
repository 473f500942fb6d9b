package ledger

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// signCheckpoint signs the tree of the given size.
func (l *Ledger) signCheckpoint(size uint64, hr tlog.HashReader) (*storedCheckpoint, error) {
	th, err := tlog.TreeHash(int64(size), hr)
	if err != nil {
		return nil, fmt.Errorf("tree hash at %d: %w", size, err)
	}
	text := Checkpoint{Origin: l.origin, Size: size, Hash: th}.Text()
	signed, err := note.Sign(&note.Note{Text: text}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return &storedCheckpoint{size: size, hash: th, signed: signed}, nil
}

// Checkpoint returns the signed checkpoint covering every event appended
// before the call and keeps it (CheckpointAt finds it later), which costs
// a write and a sync only the first time for a given size. Concurrent
// calls share them.
func (l *Ledger) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := l.checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(cp.signed), nil
}

func (l *Ledger) checkpoint(ctx context.Context) (*storedCheckpoint, error) {
	res, err := l.submit(ctx, &request{cp: true})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return res.cp, nil
}

// LatestCheckpoint returns the signed checkpoint of the whole durable log
// (every committed group signs one).
func (l *Ledger) LatestCheckpoint() []byte {
	return bytes.Clone(l.latest.Load().signed)
}

// CheckpointAt returns the checkpoint kept for a tree of exactly size
// events (by Checkpoint, or the latest), or ErrNotFound.
func (l *Ledger) CheckpointAt(size uint64) ([]byte, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	if cp := l.latest.Load(); cp.size == size {
		return bytes.Clone(cp.signed), nil
	}
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
