package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
)

// ErrRefused is wrapped by every gate refusal.
var ErrRefused = errors.New("refused")

// GateError says which check of the verification gate refused a launch.
type GateError struct {
	Check string // "identity", "revoked", "head", "signature", "file"
	Err   error
}

func (e *GateError) Error() string   { return e.Err.Error() }
func (e *GateError) Unwrap() []error { return []error{ErrRefused, e.Err} }

func refuse(check, format string, args ...any) error {
	return &GateError{Check: check, Err: fmt.Errorf(format, args...)}
}

// gate re-verifies a cell at the moment of launch: the manifest still
// hashes to the identity, the identity is not revoked and (when called by
// name) still the head, its signature verifies against the keys trusted
// now, and every file in the store still hashes to its registered digest.
// Nothing registered earlier is taken on trust.
//
// It returns the store files it hashed, open, by manifest path: the
// sandbox shows exactly these (kernel/sandbox binds the open files), so
// what runs is what was hashed, even if the store changes meanwhile. The
// caller closes them. The error is a *GateError, or ctx's if the caller
// went away while files were hashed.
func (k *Kernel) gate(ctx context.Context, cell *Cell, unsigned bool) (map[string]*os.File, error) {
	m := cell.Manifest
	if got := m.Identity(); got != cell.Identity {
		return nil, refuse("identity", "the stored manifest hashes to %s, not to its identity %s: the catalogue is damaged", got, cell.Identity)
	}
	revoked, err := k.cfg.Catalog.Revoked(cell.Identity)
	if err != nil {
		return nil, refuse("revoked", "cannot check revocation: %v", err)
	}
	if revoked {
		return nil, refuse("revoked", "%s is revoked", cell.Identity)
	}
	if cell.ByName {
		head, err := k.cfg.Catalog.Head(m.Name)
		if err != nil {
			return nil, refuse("head", "cannot read the head of %s: %v", m.Name, err)
		}
		if head != cell.Identity {
			return nil, refuse("head", "the head of %s moved to %s while the call waited; call again", m.Name, head.Short())
		}
	}
	if !unsigned {
		if _, err := capsule.VerifySignature(cell.Signature, cell.Identity, k.cfg.Trust()); err != nil {
			return nil, refuse("signature", "signature: %v", err)
		}
	}
	files := make(map[string]*os.File, len(m.Files))
	for _, p := range slices.Sorted(maps.Keys(m.Files)) {
		want := m.Files[p]
		f, got, err := openObject(ctx, k.cfg.Catalog.ObjectPath(want))
		if err == nil && got != want {
			f.Close()
			err = fmt.Errorf("it hashes to %s, not to its registered digest %s: the store was tampered with", got.Short(), want.Short())
		}
		if err != nil {
			closeAll(files)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, refuse("file", "file %q (%s) in the store: %v", p, want.Short(), err)
		}
		files[p] = f
	}
	return files, nil
}

// openObject opens a store object and hashes it. Someone with the disk may
// have put anything at that path: it never follows a symlink (O_PATH and
// O_NOFOLLOW first, so that not even a FIFO or a device is opened), refuses
// anything but a regular file, reopens that very inode for reading, reads
// at most a capsule's size, and stops when ctx ends. O_NOATIME: the
// daemon's reads leave no trace either.
func openObject(ctx context.Context, path string) (*os.File, manifest.Digest, error) {
	pfd, err := openRetry(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return nil, "", err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, "", &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return nil, "", errors.New("it is a symbolic link, not a regular file")
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, "", fmt.Errorf("it is not a regular file (mode %#o)", st.Mode)
	case st.Size > capsule.MaxTotalSize:
		return nil, "", fmt.Errorf("it is %d bytes, larger than any capsule (%d)", st.Size, capsule.MaxTotalSize)
	}
	fd, err := openRetry(fmt.Sprintf("/proc/self/fd/%d", pfd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME)
	if err != nil {
		return nil, "", err
	}
	f := os.NewFile(uintptr(fd), path)
	d, n, err := manifest.DigestReader(ctxReader{ctx, io.LimitReader(f, capsule.MaxTotalSize+1)})
	if err == nil && n > capsule.MaxTotalSize {
		err = fmt.Errorf("it grew past %d bytes while it was read", capsule.MaxTotalSize)
	}
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return f, d, nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}
