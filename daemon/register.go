package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/ledger"
)

// readUpload reads a capsule tar straight from the request body, within
// maxCapsuleBody and the capsule caps; nothing touches the disk, and
// errors call it "upload".
func readUpload(w http.ResponseWriter, r *http.Request) (*capsule.Capsule, error) {
	c, err := capsule.ReadTar(http.MaxBytesReader(w, r.Body, maxCapsuleBody), "upload")
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &httpError{http.StatusRequestEntityTooLarge, api.CodeBadRequest, fmt.Errorf("capsule upload larger than %d bytes", maxCapsuleBody)}
	}
	return c, err
}

// maxCapsuleBody bounds an uploaded capsule tar: the capsule cap plus tar
// headers and padding.
const maxCapsuleBody = capsule.MaxTotalSize + capsule.MaxEntries*1024 + 1<<20

func (d *Daemon) register(w http.ResponseWriter, r *http.Request, c caller) error {
	tenant := r.URL.Query().Get("tenant")
	caps, err := readUpload(w, r)
	if err != nil {
		return err
	}
	v, err := capsule.Verify(caps, d.trust.Load().verifiers)
	if err != nil {
		return err
	}
	m := v.Manifest
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
	ev, err := d.ledger.Register(r.Context(), rec, m.Parent, ledger.Event{Caller: c.ID, TraceID: ledger.NewTraceID()})
	if err != nil {
		return err
	}
	if err := d.storeBaseline(r.Context(), v.Identity, base); err != nil { // monitorapi.go
		return err
	}
	d.headsChanged(m.Name)
	d.log.Info("registered", "cell", m.Name, "identity", v.Identity, "parent", m.Parent, "signers", v.Signers, "tenant", tenant, "caller", c.ID, "seq", ev.Seq)
	writeJSON(w, http.StatusCreated, api.Registered{Identity: string(v.Identity), Name: m.Name, Parent: string(m.Parent), Seq: ev.Seq})
	return nil
}
