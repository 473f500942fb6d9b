package kernel

import (
	"errors"
	"fmt"
	"os"
	"slices"

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
func (k *Kernel) gate(cell *Cell, unsigned bool) error {
	m := cell.Manifest
	if got := m.Identity(); got != cell.Identity {
		return refuse("identity", "the stored manifest hashes to %s, not to its identity %s: the catalogue is damaged", got, cell.Identity)
	}
	revoked, err := k.cfg.Catalog.Revoked(cell.Identity)
	if err != nil {
		return refuse("revoked", "cannot check revocation: %v", err)
	}
	if revoked {
		return refuse("revoked", "%s is revoked", cell.Identity)
	}
	if cell.ByName {
		head, err := k.cfg.Catalog.Head(m.Name)
		if err != nil {
			return refuse("head", "cannot read the head of %s: %v", m.Name, err)
		}
		if head != cell.Identity {
			return refuse("head", "the head of %s moved to %s while the call waited; call again", m.Name, head.Short())
		}
	}
	if !unsigned {
		if _, err := capsule.VerifySignature(cell.Signature, cell.Identity, k.cfg.Trust()); err != nil {
			return refuse("signature", "signature: %v", err)
		}
	}
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		want := m.Files[p]
		got, err := hashFile(k.cfg.Catalog.ObjectPath(want))
		if err != nil {
			return refuse("file", "file %q (%s): %v", p, want.Short(), err)
		}
		if got != want {
			return refuse("file", "file %q in the store hashes to %s, not to its registered digest %s: the store was tampered with", p, got.Short(), want.Short())
		}
	}
	return nil
}

func hashFile(path string) (manifest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, _, err := manifest.DigestReader(f)
	return d, err
}
