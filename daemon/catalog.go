package daemon

import (
	"cmp"
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
	return cellOf(rec, ref == rec.Name)
}

// cellOf is a stored record as the kernel runs it; byName when the caller
// named it (then it must still be the head at launch).
func cellOf(rec *ledger.CellRecord, byName bool) (*kernel.Cell, error) {
	m, err := manifest.Parse(rec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: the stored manifest of %s does not parse: %v", ledger.ErrCorrupt, rec.Identity, err)
	}
	return &kernel.Cell{
		Identity:  rec.Identity,
		Manifest:  m,
		Signature: rec.Signature,
		Tenant:    rec.Tenant,
		ByName:    byName,
	}, nil
}

// cellFor resolves ref (a name, an identity or a prefix of one) to a cell
// c may see, as the kernel runs it. It is the one way a caller's reference
// becomes a cell: every route and MCP go through it (record).
func (d *Daemon) cellFor(c caller, ref string) (*kernel.Cell, error) {
	rec, err := d.record(c, ref)
	if err != nil {
		return nil, err
	}
	return cellOf(rec, ref == rec.Name)
}

// record resolves ref to the record of a cell c may see. Another tenant's
// cell is answered exactly as a missing one, and an ambiguous prefix lists
// only the candidates c may see, so that nothing reveals that a hidden cell
// exists.
func (d *Daemon) record(c caller, ref string) (*ledger.CellRecord, error) {
	rec, err := d.ledger.Cell(ref)
	var ae *ledger.AmbiguousError
	switch {
	case errors.As(err, &ae):
		return d.disambiguate(c, ref, ae)
	case errors.Is(err, ledger.ErrNoHead):
		if ok, verr := d.nameVisible(c, ref); verr != nil || !ok {
			return nil, cmp.Or(verr, notFound(ref))
		}
		return nil, err
	case errors.Is(err, ledger.ErrNotFound):
		return nil, notFound(ref)
	case err != nil:
		return nil, err
	case !c.Sees(rec.Tenant):
		return nil, notFound(ref)
	}
	return rec, nil
}

// notFound is the answer for a cell that does not exist or that the caller
// may not see: the same words for both.
func notFound(ref string) error {
	return fmt.Errorf("cell %q: %w: no cell you may see has this name or identity (tccctl cell list shows them)", ref, ledger.ErrNotFound)
}

// disambiguate narrows an ambiguous prefix to the candidates c may see.
func (d *Daemon) disambiguate(c caller, ref string, ae *ledger.AmbiguousError) (*ledger.CellRecord, error) {
	var seen []*ledger.CellRecord
	for _, id := range ae.Candidates {
		rec, err := d.ledger.Cell(string(id))
		if err != nil {
			return nil, err
		}
		if c.Sees(rec.Tenant) {
			seen = append(seen, rec)
		}
	}
	switch {
	case len(seen) == 0:
		return nil, notFound(ref)
	case len(seen) == 1 && !ae.More:
		return seen[0], nil
	}
	narrowed := &ledger.AmbiguousError{Ref: ae.Ref, More: ae.More}
	for _, rec := range seen {
		narrowed.Candidates = append(narrowed.Candidates, rec.Identity)
	}
	return nil, narrowed
}

// nameVisible reports whether c may see some version of name.
func (d *Daemon) nameVisible(c caller, name string) (bool, error) {
	if c.Admin {
		return true, nil
	}
	entries, err := d.ledger.Lineage(name)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Kind != ledger.LineageRegister {
			continue
		}
		if ok, err := d.identityVisible(c, e.Identity); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// identityVisible reports whether c may see the registered identity id.
func (d *Daemon) identityVisible(c caller, id manifest.Identity) (bool, error) {
	if c.Admin || id == "" {
		return true, nil
	}
	rec, err := d.ledger.Cell(string(id))
	if err != nil {
		return false, err
	}
	return c.Sees(rec.Tenant), nil
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
