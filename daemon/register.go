package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/ledger"
)

// readUpload reads a capsule tar straight from the request body, within
// maxCapsuleBody and the capsule caps; nothing touches the disk, and
// errors call it "upload".
func readUpload(w http.ResponseWriter, r *http.Request) (*capsule.Capsule, error) {
	body, done := limitedBody(w, r, maxCapsuleBody) // http.go: capped, and within bodyTimeout
	c, err := capsule.ReadTar(body, "upload")
	done()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge("capsule upload larger than %d bytes", maxCapsuleBody)
	}
	return c, err
}

// maxCapsuleBody bounds an uploaded capsule tar: the capsule cap plus tar
// headers and padding.
const maxCapsuleBody = capsule.MaxTotalSize + capsule.MaxEntries*1024 + 1<<20

func (d *Daemon) register(w http.ResponseWriter, r *http.Request, c caller) error {
	caps, err := readUpload(w, r)
	if err != nil {
		return err
	}
	v, err := capsule.Verify(caps, d.trust.Load().verifiers)
	if err != nil {
		return err
	}
	m := v.Manifest
	tenant, err := d.registerTenant(r, m.Parent, func(id string) (string, error) {
		rec, err := d.ledger.Cell(id)
		if err != nil {
			return "", err
		}
		return rec.Tenant, nil
	})
	if err != nil {
		return err
	}
	if err := d.kernel.Check(m); err != nil {
		return err
	}
	if err := d.precheckRegister(m, v.Identity); err != nil { // catalog.go
		return err
	}
	// Files first: a crash after this leaves unreferenced objects, never a
	// record whose files are missing.
	for _, file := range caps.Files() {
		got, _, err := d.ledger.PutObject(file.Open())
		if err != nil {
			return fmt.Errorf("store %s: %w", file.Path, err)
		}
		if got != file.Digest || m.Files[file.Path] != got {
			return fmt.Errorf("store %s: stored as %s, manifest says %s", file.Path, got, m.Files[file.Path])
		}
	}
	cell := &kernel.Cell{Identity: v.Identity, Manifest: m, Signature: v.Signature, Tenant: tenant}
	base, err := d.probation(r.Context(), cell, caps) // monitorapi.go
	if err != nil {
		return err
	}
	rec := ledger.CellRecord{
		Identity:  v.Identity,
		Name:      m.Name,
		Manifest:  m.Canonical(),
		Signature: bytes.Clone(v.Signature),
		Signers:   v.Signers,
		Tenant:    tenant,
	}
	// The probation baseline is stored in the registration's own batch.
	ev, err := d.ledger.Register(r.Context(), rec, m.Parent, ledger.Event{Caller: c.ID, TraceID: ledger.NewTraceID()},
		storeBaseline(v.Identity, base)...) // monitorapi.go
	if err != nil {
		return err
	}
	d.baselineStored(v.Identity, base, ev.Seq) // monitorapi.go
	d.headsChanged(r.Context(), m.Name)
	d.log.Info("registered", logCell, m.Name, logIdentity, v.Identity, "parent", m.Parent, "signers", v.Signers, logTenant, tenant, logCaller, c.ID, logSeq, ev.Seq)
	writeJSON(w, http.StatusCreated, api.Registered{Identity: string(v.Identity), Name: m.Name, Parent: string(m.Parent), Seq: ev.Seq})
	return nil
}

// registerTenant decides the tenant of a new version (of a cell or a
// prompt): ?tenant= if given (empty: every tenant), else its parent's, so
// that a tenant's cell does not become shared, or invisible, because a
// flag was forgotten or mistyped. A tenant other than the parent's needs
// ?change_tenant=1. tenantOf looks up the parent's tenant.
func (d *Daemon) registerTenant(r *http.Request, parent manifest.Identity, tenantOf func(id string) (string, error)) (string, error) {
	q := r.URL.Query()
	tenant, explicit := q.Get("tenant"), q.Has("tenant")
	if tenant != "" {
		if err := d.knownTenant(tenant); err != nil { // tenants.go
			return "", badRequest("register: %v", err)
		}
	}
	if parent == "" {
		return tenant, nil
	}
	was, err := tenantOf(string(parent))
	if errors.Is(err, ledger.ErrNotFound) {
		return tenant, nil // the lineage check names the missing parent
	} else if err != nil {
		return "", err
	}
	switch {
	case !explicit:
		return was, nil
	case tenant != was && q.Get("change_tenant") != "1":
		return "", &httpError{http.StatusConflict, api.CodeLineage, fmt.Errorf("register: the parent %s belongs to %s, not %s; leave out --tenant to keep it, or pass --change-tenant to move the name",
			parent, tenantName(was), tenantName(tenant))}
	}
	return tenant, nil
}
