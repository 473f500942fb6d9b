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
