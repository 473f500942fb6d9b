package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// mcpRoutes mounts the MCP endpoint and the control API of tokens, the
// vault and prompts.
func (d *Daemon) mcpRoutes(mux *http.ServeMux) {
	mux.Handle("/mcp", d.mcp)
	mux.Handle("POST /v1/tokens", d.handle(admin(d.issueToken)))
	mux.Handle("GET /v1/tokens", d.handle(admin(d.listTokens)))
	mux.Handle("POST /v1/tokens/{jti}/revoke", d.handle(admin(d.revokeToken)))
	mux.Handle("POST /v1/vault/{tenant}/{path...}", d.handle(admin(d.vaultPut)))
	mux.Handle("GET /v1/vault", d.handle(d.vaultList))
	mux.Handle("POST /v1/prompts", d.handle(admin(d.registerPrompt)))
	mux.Handle("GET /v1/prompts", d.handle(d.listPrompts))
	mux.Handle("GET /v1/prompts/{ref}", d.handle(d.showPrompt))
}

// initMCP loads the tenants file and the token key, builds the MCP
// endpoint and, with --listen-tcp, listens on the loopback address (Run
// serves it once daemon.start is recorded).
func (d *Daemon) initMCP(ctx context.Context) (func(), error) {
	ts, err := loadTenants(d.cfg.Tenants)
	if err != nil {
		return nil, err
	}
	d.tenants.Store(ts)
	if d.tokenKey, err = loadOrCreateTokenKey(d.tokenKeyPath()); err != nil {
		return nil, err
	}
	d.mcp, err = mcp.New(ctx, mcp.Options{
		Version: Version,
		Auth:    mcpAuth{d},
		Cells:   mcpCells{d},
		Runner:  mcpRunner{d},
		Audit:   mcpAudit{d},
		Vault:   mcpVault{d},
		Prompts: mcpPrompts{d},
		Logger:  d.log,
	})
	if err != nil {
		return nil, err
	}
	if d.cfg.ListenTCP == "" {
		return func() {}, nil
	}
	l, err := listenLoopback(d.cfg.ListenTCP)
	if err != nil {
		return nil, err
	}
	d.tcp = &limitListener{Listener: l, sem: make(chan struct{}, maxTCPConns)}
	return func() { d.tcp.Close() }, nil // if Run stops before serving it
}

// tcpRoutes is what the loopback TCP listener serves: /mcp only.
func (d *Daemon) tcpRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mcp", d.mcp)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: api.CodeNotFound, Message: "only /mcp is served over TCP; the control API is on tccd's Unix socket"})
	})
	return mux
}

// CheckListenTCP refuses a --listen-tcp address that is not loopback
// (127.0.0.0/8, ::1 or "localhost"): tccd is local-only by design. ""
// (no TCP listener) is fine.
func CheckListenTCP(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen-tcp %q: %v (want HOST:PORT, e.g. 127.0.0.1:8765)", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		what := fmt.Sprintf("%q is not a loopback address", host)
		if host == "" {
			what = "an empty host listens on every interface"
		}
		return fmt.Errorf("--listen-tcp %q: %s; tccd is local-only by design and serves MCP over TCP only on 127.0.0.0/8, ::1 or localhost", addr, what)
	}
	return nil
}

// listenLoopback listens on addr, which must be a loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	if err := CheckListenTCP(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen-tcp: %w", err)
	}
	if ta, ok := l.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		l.Close()
		return nil, fmt.Errorf("--listen-tcp %q resolved to %s, which is not a loopback address; give 127.0.0.1 or ::1", addr, l.Addr())
	}
	return l, nil
}

// headsChanged is called after a registration, rollback or revocation
// moved the head of a name (MCP clients get tools/list_changed).
func (d *Daemon) headsChanged(ctx context.Context, name string) {
	if d.mcp != nil {
		d.mcp.HeadsChanged(context.WithoutCancel(ctx), name)
	}
}

// mcpCells is the catalogue as the MCP endpoint sees it.
type mcpCells struct{ d *Daemon }

// Heads lists every head; one whose stored manifest does not parse is left
// out (and logged) rather than failing every tool: the gate refuses to run
// it anyway.
func (m mcpCells) Heads(ctx context.Context) ([]mcp.Cell, error) {
	list, err := m.d.ledger.List()
	if err != nil {
		return nil, err
	}
	out := make([]mcp.Cell, 0, len(list))
	for _, s := range list {
		if s.Head == "" {
			continue
		}
		c, err := m.Head(ctx, s.Name)
		if errors.Is(err, ledger.ErrCorrupt) {
			m.d.log.Error("cell not offered as a tool: its stored record is corrupt", logCell, s.Name, logIdentity, s.Head, logErr, err)
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, nil
}

func (m mcpCells) Head(_ context.Context, name string) (*mcp.Cell, error) {
	rec, err := m.d.ledger.Head(name)
	if errors.Is(err, ledger.ErrNoHead) || errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("cell %s: %w", name, mcp.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	c, err := cellOf(rec, true)
	if err != nil {
		return nil, err
	}
	return &mcp.Cell{Name: name, Identity: string(c.Identity), Tenant: c.Tenant, Manifest: c.Manifest}, nil
}

func (m mcpCells) Lineage(_ context.Context, c *mcp.Caller, name string) (json.RawMessage, error) {
	l, err := m.d.lineageOf(*c, name)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("cell %s: %w", name, mcp.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	return json.Marshal(l)
}

// mcpRunner runs MCP tool calls through d.call: the same resolution,
// scope checks, verification gate, sandbox and audit events as the control
// API's run.
type mcpRunner struct{ d *Daemon }

// kindError keeps an error's text and adds the kind another layer answers
// by (mcp.ErrNotFound, mcp.ErrForbidden…).
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

func (m mcpRunner) Call(ctx context.Context, c *mcp.Caller, cell string, input json.RawMessage, progress func(mcp.Progress)) (*outcome.Outcome, error) {
	o, err := m.d.call(ctx, *c, cell, input, func(p kernel.Progress) {
		progress(mcp.Progress{Progress: p.Progress, Total: p.Total, Message: p.Message})
	})
	var ie *kernel.InputError
	switch {
	case errors.As(err, &ie):
		return nil, &kindError{err, mcp.ErrInvalidInput}
	case errors.Is(err, kernel.ErrBusy):
		return nil, &kindError{fmt.Errorf("tccd is busy (every sandbox slot and the queue are taken); retry shortly: %w", err), mcp.ErrBusy}
	case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrNoHead):
		return nil, &kindError{err, mcp.ErrNotFound}
	}
	return o, err
}

// mcpAudit is the ledger as MCP resources show it, with the control API's
// visibility rules (ledgerapi.go: visible, filterFor).
type mcpAudit struct{ d *Daemon }

func (a mcpAudit) Checkpoint() []byte { return a.d.ledger.LatestCheckpoint() }

func (a mcpAudit) Event(_ context.Context, c *mcp.Caller, seq uint64) (json.RawMessage, error) {
	ev, raw, err := a.d.ledger.Event(seq)
	if errors.Is(err, ledger.ErrNotFound) || err == nil && !visible(*c, ev) {
		return nil, fmt.Errorf("event %d: %w", seq, mcp.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	return raw, nil
}

// Recent scans the log backwards in windows (through the tenant index for
// a tenant's caller) until it has n visible events, looking at most
// recentScan events back.
func (a mcpAudit) Recent(_ context.Context, c *mcp.Caller, n int) ([]json.RawMessage, error) {
	const window, recentScan = 4096, 1 << 18
	var out []json.RawMessage
	size := a.d.ledger.Size()
	dc := *c
	f, err := filterFor(dc, "")
	if err != nil {
		return nil, err
	}
	for to := size; to > 0 && len(out) < n && size-to < recentScan; {
		from := to - min(to, window)
		var batch []json.RawMessage
		for e, err := range a.d.ledger.Events(from, to, f) {
			if err != nil {
				return nil, err
			}
			if visible(dc, e.Event) {
				batch = append(batch, e.Raw)
			}
		}
		out = append(batch, out...)
		to = from
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}
