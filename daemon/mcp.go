package daemon

import (
	"context"
	"net/http"
)

// mcpRoutes mounts the control API of the MCP endpoint, tokens and the vault.
func (d *Daemon) mcpRoutes(mux *http.ServeMux) {}

// initMCP starts the MCP endpoint, tokens and the vault; the returned func stops it.
func (d *Daemon) initMCP(ctx context.Context) (func(), error) { return func() {}, nil }

// headsChanged is called after a registration, rollback or revocation
// moved the head of a name (MCP clients get tools/list_changed).
func (d *Daemon) headsChanged(name string) {}
