package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/trustcells/tcc/cells/manifest"
)

// The content-addressed store keeps cell binaries and data files under
// objects/sha256/<2 hex>/<62 hex>, mode 0555: readable and executable by
// the cell's uid once bind-mounted into a sandbox, but reachable on the
// host only by root through the 0700 directories above. Objects are never
// rewritten in place and never deleted (cells are immutable).

const objectMode = 0o555

func (l *Ledger) openObjects() error {
	for _, d := range []string{l.objects, filepath.Join(l.objects, "sha256"), filepath.Join(l.objects, "tmp")} {
		if err := privateDir(d); err != nil {
			return err
		}
	}
	// Temporary files left by a crash are never referenced: drop them.
	tmp := filepath.Join(l.objects, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// ObjectPath is where the object with digest d lives (whether or not it
// exists).
func (l *Ledger) ObjectPath(d manifest.Digest) (string, error) {
	if err := validDigest("digest", string(d)); err != nil {
		return "", fmt.Errorf("object path: %w", err)
	}
	h := string(d)[len(hashPrefix):]
	return filepath.Join(l.objects, "sha256", h[:2], h[2:]), nil
}

// PutObject stores the content of r and returns its digest and size. It
// returns only once the object and its directory entry are durable. Putting
// content that is already stored intact is a no-op; a damaged copy is
// replaced (atomically, by rename), so registering a capsule again repairs
// the store.
func (l *Ledger) PutObject(r io.Reader) (_ manifest.Digest, _ int64, err error) {
	if !l.acquire() {
		return "", 0, ErrClosed
	}
	defer l.release()
	tmp, err := os.CreateTemp(filepath.Join(l.objects, "tmp"), "put-*")
	if err != nil {
		return "", 0, fmt.Errorf("put object: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return "", 0, fmt.Errorf("put object: %w", err)
	}
	d := manifest.Digest(hashPrefix + hex.EncodeToString(h.Sum(nil)))
	path, _ := l.ObjectPath(d)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == n && l.CheckObject(d) == nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return d, n, nil
	}
	if err := tmp.Chmod(objectMode); err != nil {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	fan := filepath.Dir(path)
	if err := os.Mkdir(fan, 0o700); err == nil {
		if err := syncDir(filepath.Dir(fan)); err != nil {
			return "", 0, fmt.Errorf("put object %s: %w", d, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	if err := syncDir(fan); err != nil {
		return "", 0, fmt.Errorf("put object %s: %w", d, err)
	}
	return d, n, nil
}

// CheckObject re-hashes the object: nil when present, a regular file and
// intact; otherwise an *ObjectError (ErrObjectCorrupt, ErrNotFound).
func (l *Ledger) CheckObject(d manifest.Digest) error {
	path, err := l.ObjectPath(d)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ObjectError{Digest: d, Path: path, Err: ErrNotFound}
	}
	if err != nil {
		return &ObjectError{Digest: d, Path: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &ObjectError{Digest: d, Path: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &ObjectError{Digest: d, Path: path, Err: fmt.Errorf("%w: not a regular file", ErrObjectCorrupt)}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return &ObjectError{Digest: d, Path: path, Err: err}
	}
	if got := manifest.Digest(hashPrefix + hex.EncodeToString(h.Sum(nil))); got != d {
		return &ObjectError{Digest: d, Path: path, Got: got, Err: ErrObjectCorrupt}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
