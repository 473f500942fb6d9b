// Package blobs keeps the inputs and outputs of calls so that a call can be
// replayed: a content-addressed store, scoped by tenant, capped in size
// and in age. Blobs are a convenience, not evidence: the ledger records
// their SHA-256, and Get re-hashes what it returns, so a lost, evicted or
// damaged blob is only a replay that cannot be made.
//
// Layout: <Dir>/<tenant dir>/<64 hex> (files 0600, directories 0700), where
// the tenant dir is "_" for no tenant and "t-" + the SHA-256 of the tenant
// name otherwise, so a tenant never reads another's blob even when both
// sent the same bytes. Writes are not fsynced: a crash may lose the
// newest blobs, never the ledger's record of them.
//
// The package must never touch the ledger or anything outside Dir, and
// never return bytes that do not hash to the digest asked for.
package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNotFound: the blob is not (or no longer) in the store.
	ErrNotFound = errors.New("blob not in the store")
	// ErrTooLarge: the blob is larger than the whole store's cap.
	ErrTooLarge = errors.New("blob larger than the store's cap")
	// ErrDisabled: the store keeps nothing (cap 0).
	ErrDisabled = errors.New("blob store disabled")
)

// Options configure Open.
type Options struct {
	Dir string
	// Cap bounds the bytes kept; the oldest blobs are evicted beyond it.
	// Zero or less keeps nothing.
	Cap int64
	// Retention is how long a blob is kept after it was last used (stored
	// or read); zero or less keeps blobs until the cap evicts them.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is an open blob directory. It is safe for concurrent use.
type Store struct {
	opts Options

	mu    sync.Mutex
	index map[string]entry // tenant dir + "/" + hex → entry
	total int64
}

type entry struct {
	size int64
	at   time.Time // last used: stored or read (the file's mtime on disk)
}

// Open opens (creating) the store and indexes what it holds. Files that are
// not blobs, and temporary files a crash left, are removed.
func Open(opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{opts: opts, index: map[string]entry{}}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	err := filepath.WalkDir(opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(opts.Dir, p)
		dir, name := filepath.Split(rel)
		switch {
		case d.IsDir():
			return nil
		case dir == "tmp/" || !d.Type().IsRegular() || !isHex(name) || strings.Count(rel, "/") != 1:
			return os.Remove(p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s.index[rel] = entry{size: fi.Size(), at: fi.ModTime()}
		s.total += fi.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", opts.Dir, err)
	}
	if _, _, err := s.Prune(); err != nil {
		return nil, err
	}
	return s, nil
}

func tenantDir(tenant string) string {
	if tenant == "" {
		return "_"
	}
	h := sha256.Sum256([]byte(tenant))
	return "t-" + hex.EncodeToString(h[:])
}

func isHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Put stores data for tenant and returns its digest (lower-case hex
// SHA-256). Storing what is already there only refreshes its last use.
func (s *Store) Put(tenant string, data []byte) (string, error) {
	if s.opts.Cap <= 0 {
		return "", ErrDisabled
	}
	if int64(len(data)) > s.opts.Cap {
		return "", fmt.Errorf("put blob of %d bytes: %w (%d)", len(data), ErrTooLarge, s.opts.Cap)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	key := tenantDir(tenant) + "/" + digest
	path := filepath.Join(s.opts.Dir, key)
	now := s.opts.Now()

	if s.touch(key, now) {
		return digest, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.opts.Dir, "tmp"), "put-*")
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(tmp.Name(), now, now)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("put blob: %w", err)
	}
	s.mu.Lock()
	if old, ok := s.index[key]; ok {
		s.total -= old.size
	}
	s.index[key] = entry{size: int64(len(data)), at: now}
	s.total += int64(len(data))
	over := s.total > s.opts.Cap
	s.mu.Unlock()
	if over {
		if _, _, err := s.Prune(); err != nil {
			return digest, err
		}
	}
	return digest, nil
}

// Get returns the blob of tenant with the given digest, checked against
// it. A missing or damaged blob is ErrNotFound (a damaged one is removed).
func (s *Store) Get(tenant, digest string) ([]byte, error) {
	digest = strings.TrimPrefix(digest, "sha256:")
	if !isHex(digest) {
		return nil, fmt.Errorf("get blob %q: %w", digest, ErrNotFound)
	}
	key := tenantDir(tenant) + "/" + digest
	data, err := os.ReadFile(filepath.Join(s.opts.Dir, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get blob sha256:%s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob sha256:%s: %w", digest, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != digest {
		s.mu.Lock()
		s.remove([]string{key})
		s.mu.Unlock()
		return nil, fmt.Errorf("get blob sha256:%s: %w (the stored copy was damaged and is removed)", digest, ErrNotFound)
	}
	s.touch(key, s.opts.Now())
	return data, nil
}

// touch records a use of the indexed blob key; false if it is not indexed
// (or its file is gone). The index is updated first, under the lock Prune
// holds, so a blob in use is never pruned as old.
func (s *Store) touch(key string, now time.Time) bool {
	s.mu.Lock()
	e, ok := s.index[key]
	if ok {
		e.at = now
		s.index[key] = e
	}
	s.mu.Unlock()
	return ok && os.Chtimes(filepath.Join(s.opts.Dir, key), now, now) == nil
}

// Prune removes blobs unused for longer than the retention, then the
// least recently used until the total is at most 90% of the cap (so that
// eviction runs in bursts, not on every Put). It returns what it removed.
// It holds the lock throughout, so what it removes is what it judged.
func (s *Store) Prune() (removed int, freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type kv struct {
		key string
		entry
	}
	all := make([]kv, 0, len(s.index))
	for k, e := range s.index {
		all = append(all, kv{k, e})
	}
	total := s.total

	slices.SortFunc(all, func(a, b kv) int { return a.at.Compare(b.at) })
	var victims []string
	cutoff := time.Time{}
	if s.opts.Retention > 0 {
		cutoff = s.opts.Now().Add(-s.opts.Retention)
	}
	target := s.opts.Cap - s.opts.Cap/10
	over := total > s.opts.Cap
	for _, e := range all { // oldest first: the expired ones lead
		if expired := e.at.Before(cutoff); !expired && (!over || total <= target) {
			break
		}
		victims = append(victims, e.key)
		total -= e.size
		freed += e.size
	}
	return len(victims), freed, s.remove(victims)
}

// remove deletes blobs and their index entries; s.mu is held.
func (s *Store) remove(keys []string) error {
	var errs []error
	for _, k := range keys {
		if err := os.Remove(filepath.Join(s.opts.Dir, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if e, ok := s.index[k]; ok {
			s.total -= e.size
			delete(s.index, k)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("prune blobs: %w", errors.Join(errs...))
	}
	return nil
}

// Usage returns the number of blobs and their total size.
func (s *Store) Usage() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index), s.total
}
