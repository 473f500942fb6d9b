package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/seccomp"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// maxJSONBody bounds control requests other than registration.
const maxJSONBody = 1 << 20

func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/status", d.handle(d.status))
	mux.Handle("GET /v1/cells", d.handle(d.listCells))
	mux.Handle("POST /v1/cells", d.handle(admin(d.register)))
	mux.Handle("GET /v1/cells/{ref}", d.handle(d.inspectCell))
	mux.Handle("GET /v1/cells/{name}/lineage", d.handle(d.lineage))
	mux.Handle("GET /v1/cells/{ref}/syscalls", d.handle(d.syscalls))
	mux.Handle("POST /v1/cells/{name}/rollback", d.handle(admin(d.rollback)))
	mux.Handle("POST /v1/cells/{ref}/revoke", d.handle(admin(d.revoke)))
	mux.Handle("POST /v1/cells/{ref}/run", d.handle(d.run))
	d.ledgerRoutes(mux)  // ledgerapi.go: audit log, proofs, export, replay
	d.mcpRoutes(mux)     // mcp.go: the MCP endpoint, tokens, vault
	d.monitorRoutes(mux) // monitorapi.go: profiles and advice
	mux.Handle("/", d.handle(func(_ http.ResponseWriter, r *http.Request, _ caller) error {
		return &httpError{http.StatusNotFound, api.CodeNotFound, errors.New("no such endpoint: " + r.Method + " " + r.URL.Path)}
	}))
	return mux
}

// statusClientClosed answers a request whose caller went away (nginx's
// 499): nobody reads it, and it is not logged as a failure.
const statusClientClosed = 499

// classify maps an error to an HTTP status and API code.
func (d *Daemon) classify(err error) (int, api.Code) {
	var he *httpError
	var ce *capsule.Error
	var ie *kernel.InputError
	var re *seccomp.RequestError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.code
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.Is(err, mcp.ErrForbidden):
		return http.StatusForbidden, api.CodeForbidden
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller went away, or tccd is stopping: nothing failed.
		return statusClientClosed, api.CodeUnavailable
	case errors.As(err, &ce):
		return http.StatusUnprocessableEntity, api.CodeVerification
	case errors.As(err, &ie), errors.As(err, &re), errors.Is(err, ledger.ErrInvalid):
		return http.StatusBadRequest, api.CodeBadRequest
	case errors.Is(err, kernel.ErrBusy):
		return http.StatusServiceUnavailable, api.CodeBusy
	case errors.Is(err, ledger.ErrAmbiguous):
		return http.StatusConflict, api.CodeAmbiguous
	case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrNoHead):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, ledger.ErrExists):
		return http.StatusConflict, api.CodeExists
	case errors.Is(err, ledger.ErrRevoked):
		return http.StatusConflict, api.CodeRevoked
	case errors.Is(err, ledger.ErrLineage), errors.Is(err, ledger.ErrIsHead), errors.Is(err, ledger.ErrOtherName):
		return http.StatusConflict, api.CodeLineage
	case errors.Is(err, ledger.ErrClosed):
		return http.StatusServiceUnavailable, api.CodeUnavailable
	}
	return http.StatusInternalServerError, api.CodeInternal
}

func (d *Daemon) status(w http.ResponseWriter, r *http.Request, c caller) error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	mode := "hybrid"
	if cgroups.IsCgroup2UnifiedMode() {
		mode = "unified"
	}
	cells, err := d.ledger.List()
	if err != nil {
		return err
	}
	heads := 0
	for _, s := range cells {
		if s.Head != "" && c.Sees(s.Tenant) {
			heads++
		}
	}
	running, queued, maxR, maxQ := d.kernel.Load()
	avail, why := d.kernel.MonitorStatus()
	s := api.Status{
		Version:   Version,
		PID:       os.Getpid(),
		Started:   d.started,
		Kernel:    unix.ByteSliceToString(uts.Release[:]) + " " + runtime.GOARCH,
		Cgroups:   mode,
		Cells:     heads,
		Ledger:    d.ledgerStatus(), // ledgerapi.go
		Sandboxes: api.Sandboxes{Running: running, Queued: queued, Max: maxR, Queue: maxQ},
		Monitor:   api.Feature{Available: avail, Reason: why},
		Caller:    api.Caller{ID: c.ID, Admin: c.Admin, Tenant: c.Tenant, Scopes: c.Scopes},
	}
	if c.Admin {
		// Where tccd keeps its state and whom it trusts is for admins.
		s.StateDir, s.Socket, s.Trusted = d.cfg.StateDir, d.cfg.Socket, d.trust.Load().names
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

// listCells lists the names whose head c may see.
func (d *Daemon) listCells(w http.ResponseWriter, r *http.Request, c caller) error {
	list, err := d.ledger.List()
	if err != nil {
		return err
	}
	out := make([]api.CellSummary, 0, len(list))
	for _, s := range list {
		if !c.Sees(s.Tenant) {
			continue
		}
		if s.Head == "" { // every version revoked: the tenant is the versions'
			if ok, err := d.nameVisible(c, s.Name); err != nil {
				return err
			} else if !ok {
				continue
			}
		}
		cs := api.CellSummary{Name: s.Name, Head: string(s.Head), Versions: s.Versions, Tenant: s.Tenant, RegisteredAt: nsTime(s.RegisteredNS)}
		if s.Head != "" {
			if rec, err := d.ledger.Cell(string(s.Head)); err == nil {
				if m, err := manifest.Parse(rec.Manifest); err == nil {
					cs.Title, cs.Phase = m.Title, string(m.Phase)
				}
			}
		}
		out = append(out, cs)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (d *Daemon) inspectCell(w http.ResponseWriter, r *http.Request, c caller) error {
	rec, err := d.record(c, r.PathValue("ref")) // catalog.go
	if err != nil {
		return err
	}
	revoked, err := d.ledger.Revoked(rec.Identity)
	if err != nil {
		return err
	}
	head := false
	if h, err := d.ledger.Head(rec.Name); err == nil {
		head = h.Identity == rec.Identity
	}
	writeJSON(w, http.StatusOK, api.Cell{
		Identity:     string(rec.Identity),
		Name:         rec.Name,
		Parent:       string(rec.Parent),
		Signers:      rec.Signers,
		Tenant:       rec.Tenant,
		Head:         head,
		Revoked:      revoked,
		Seq:          rec.Seq,
		RegisteredAt: nsTime(rec.RegisteredNS),
		Manifest:     rec.Manifest,
	})
	return nil
}

func (d *Daemon) lineage(w http.ResponseWriter, r *http.Request, c caller) error {
	out, err := d.lineageOf(c, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lineageOf is the history of a name as c may see it (also the MCP
// resource tcc://cells/{name}/lineage): versions of other tenants, and the
// head moves that name them, are left out; a name with no version c may
// see is not found, as a missing one.
func (d *Daemon) lineageOf(c caller, name string) (*api.Lineage, error) {
	entries, err := d.ledger.Lineage(name)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, notFound(name)
	} else if err != nil {
		return nil, err
	}
	seen := map[manifest.Identity]bool{"": true}
	for _, e := range entries {
		if e.Kind == ledger.LineageRegister {
			if seen[e.Identity], err = d.identityVisible(c, e.Identity); err != nil {
				return nil, err
			}
		}
	}
	out := &api.Lineage{Name: name, Entries: []api.LineageEntry{}}
	for _, e := range entries {
		switch {
		case e.Kind == ledger.LineageRegister:
			if !seen[e.Identity] {
				continue
			}
			out.Entries = append(out.Entries, api.LineageEntry{Identity: string(e.Identity), Parent: string(e.Parent), Seq: e.Seq, RegisteredAt: nsTime(e.TimeNS), Head: e.Head, Revoked: e.Revoked})
			if e.Head {
				out.Head = string(e.Identity)
			}
		case e.Kind == ledger.LineageRevoke && e.From == "":
			// revoking a non-head moves nothing
		case seen[e.From] && seen[e.To]:
			out.Moves = append(out.Moves, api.HeadMove{Seq: e.Seq, Kind: string(e.Kind), From: string(e.From), To: string(e.To), At: nsTime(e.TimeNS)})
		}
	}
	if len(out.Entries) == 0 {
		return nil, notFound(name)
	}
	return out, nil
}

func (d *Daemon) syscalls(w http.ResponseWriter, r *http.Request, c caller) error {
	cell, err := d.cellFor(c, r.PathValue("ref")) // catalog.go
	if err != nil {
		return err
	}
	allowed, err := d.kernel.Syscalls(cell)
	if err != nil {
		return err
	}
	m := cell.Manifest
	writeJSON(w, http.StatusOK, api.Syscalls{Identity: string(cell.Identity), Groups: m.Syscalls.Groups, Extra: m.Syscalls.Extra, Allowed: allowed})
	return nil
}

func (d *Daemon) rollback(w http.ResponseWriter, r *http.Request, c caller) error {
	var req api.RollbackRequest
	if err := decodeJSON(r, maxJSONBody, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	to, err := d.ledger.Cell(req.To)
	if err != nil {
		return err
	}
	// A rollback must not move a name to another tenant unnoticed: that
	// would hide the cell from its tenant, or show it to everyone.
	if head, err := d.ledger.Head(name); err == nil && head.Tenant != to.Tenant && !req.ChangeTenant {
		return &httpError{http.StatusConflict, api.CodeLineage, fmt.Errorf("rollback of %s to %s would move it from %s to %s; pass --change-tenant if that is what you want",
			name, to.Identity, tenantName(head.Tenant), tenantName(to.Tenant))}
	}
	ev, err := d.ledger.Rollback(r.Context(), name, to.Identity, ledger.Event{Caller: c.ID, TraceID: ledger.NewTraceID()})
	if err != nil {
		return err
	}
	d.log.Info("rolled back", logCell, name, "from", ev.Parent, "to", ev.Identity, logCaller, c.ID, logSeq, ev.Seq)
	d.headsChanged(r.Context(), name)
	writeJSON(w, http.StatusOK, api.HeadMoved{Name: name, From: string(ev.Parent), To: string(ev.Identity), Seq: ev.Seq})
	return nil
}

// tenantName says which tenant, "" being every tenant.
func tenantName(t string) string {
	if t == "" {
		return "every tenant"
	}
	return "tenant " + t
}

func (d *Daemon) revoke(w http.ResponseWriter, r *http.Request, c caller) error {
	ref := r.PathValue("ref")
	rec, err := d.ledger.Cell(ref)
	if err != nil {
		return err
	}
	if ref == rec.Name {
		return badRequest("revoke takes an identity, not a name: %q names the head %s; pass that identity to revoke it", ref, rec.Identity)
	}
	ev, err := d.ledger.Revoke(r.Context(), rec.Identity, ledger.Event{Caller: c.ID, TraceID: ledger.NewTraceID()})
	if err != nil {
		return err
	}
	d.log.Info("revoked", logCell, rec.Name, logIdentity, rec.Identity, logCaller, c.ID, logSeq, ev.Seq)
	d.headsChanged(r.Context(), rec.Name)
	out := api.HeadMoved{Name: rec.Name, Seq: ev.Seq}
	if nh, ok := ev.Attrs["new_head"]; ok {
		out.From = string(rec.Identity)
		if nh != "none" {
			out.To = nh
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
