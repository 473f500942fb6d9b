package ledger

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// hashReader serves tlog's hash reads: hashes written earlier in the
// current group, then the cached frontier, then the store.
type hashReader struct {
	pending  map[int64]tlog.Hash
	frontier map[int64]tlog.Hash
	r        reader
}

func (h *hashReader) one(i int64) (tlog.Hash, error) {
	if x, ok := h.pending[i]; ok {
		return x, nil
	}
	if x, ok := h.frontier[i]; ok {
		return x, nil
	}
	return readHash(h.r, i)
}

func (h *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for n, i := range indexes {
		x, err := h.one(i)
		if err != nil {
			return nil, err
		}
		out[n] = x
	}
	return out, nil
}

func readHash(r reader, i int64) (tlog.Hash, error) {
	var h tlog.Hash
	v, err := getCopy(r, hashKey(i))
	if err != nil {
		level, n := tlog.SplitStoredHashIndex(i)
		return h, fmt.Errorf("%w: tree hash %d (level %d, node %d): %v", ErrCorrupt, i, level, n, err)
	}
	if len(v) != tlog.HashSize {
		return h, fmt.Errorf("%w: tree hash %d has %d bytes", ErrCorrupt, i, len(v))
	}
	copy(h[:], v)
	return h, nil
}

func (l *Ledger) dbHashes() tlog.HashReader { return &hashReader{r: l.db} }

func (l *Ledger) frontierHashes() tlog.HashReader {
	return &hashReader{frontier: l.frontier, r: l.db}
}

// frontierIndexes are the stored-hash indexes of the complete subtrees of
// a tree of size n, largest first: exactly what tlog reads to append leaf n
// (StoredHashes) and to hash the tree (TreeHash).
func frontierIndexes(n uint64) []int64 {
	var out []int64
	for level := 63; level >= 0; level-- {
		if n>>uint(level)&1 == 1 {
			out = append(out, tlog.StoredHashIndex(level, int64(n>>uint(level))-1))
		}
	}
	return out
}
