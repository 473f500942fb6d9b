package daemon

import (
	"errors"
	"fmt"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/ledger"
)

// catalog is the ledger as the Trust Kernel sees it.
type catalog struct{ d *Daemon }

func (c catalog) Cell(ref string) (*kernel.Cell, error) {
	rec, err := c.d.ledger.Cell(ref)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(rec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: the stored manifest of %s does not parse: %v", ledger.ErrCorrupt, rec.Identity, err)
	}
	return &kernel.Cell{
		Identity:  rec.Identity,
		Manifest:  m,
		Signature: rec.Signature,
		Tenant:    rec.Tenant,
		ByName:    ref == rec.Name,
	}, nil
}

func (c catalog) Head(name string) (manifest.Identity, error) {
	rec, err := c.d.ledger.Head(name)
	if errors.Is(err, ledger.ErrNoHead) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return rec.Identity, nil
}

func (c catalog) Revoked(id manifest.Identity) (bool, error) {
	return c.d.ledger.Revoked(id)
}

func (c catalog) ObjectPath(d manifest.Digest) string {
	p, err := c.d.ledger.ObjectPath(d)
	if err != nil {
		return "" // the gate fails to open it and refuses the launch
	}
	return p
}

func (c catalog) Baseline(id manifest.Identity) (*monitor.Baseline, error) {
	return c.d.baseline(id)
}

// precheckRegister refuses, before probation runs sandboxes for it, a
// registration the ledger would refuse anyway: an identity that is revoked
// or already registered, or a parent that is not the current head.
// ledger.Register checks all of it again, atomically; this only spares the
// work and gives the ledger's answer instead of a probation failure (the
// gate refuses a revoked identity's probation runs).
func (d *Daemon) precheckRegister(m *manifest.Manifest, id manifest.Identity) error {
	revoked, err := d.ledger.Revoked(id)
	if err != nil {
		return err
	}
	if revoked {
		return fmt.Errorf("cell %q %s: %w; a revoked identity can never be registered again", m.Name, id, ledger.ErrRevoked)
	}
	if rec, err := d.ledger.Cell(string(id)); err == nil {
		return fmt.Errorf("cell %s: %w (as %q at seq %d)", id, ledger.ErrExists, rec.Name, rec.Seq)
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return err
	}
	le := &ledger.LineageError{Name: m.Name, Parent: m.Parent}
	switch h, err := d.ledger.Head(m.Name); {
	case err == nil:
		le.Head = h.Identity
	case errors.Is(err, ledger.ErrNoHead):
		le.Revoked = true
	case !errors.Is(err, ledger.ErrNotFound):
		return err
	}
	if m.Parent != le.Head {
		return le
	}
	return nil
}
