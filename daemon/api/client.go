package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/trustcells/tcc/kernel/outcome"
)

// ErrUnreachable means no daemon answered on the socket: nothing was sent.
var ErrUnreachable = errors.New("cannot reach tccd")

// Client talks to tccd over its Unix socket.
type Client struct {
	Socket string
	Token  string // bearer token, optional; without one tccd knows the caller by its peer credentials
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	c := &Client{Socket: socket}
	c.http = &http.Client{Transport: &transport{c: c, base: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		},
	}}}
	return c
}

// transport sends the client's bearer token with every request.
type transport struct {
	c    *Client
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.c.Token != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.c.Token)
	}
	return t.base.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// connections of the base transport.
func (t *transport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// dialError marks a failure to connect, as opposed to one after the
// request was sent (which may have done something: a run may have run).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// HTTPClient returns an HTTP client whose every request goes to the daemon's
// socket, whatever the URL's host, with the client's token; use with
// BaseURL (MCPEndpoint for the MCP endpoint).
func (c *Client) HTTPClient() *http.Client { return c.http }

// BaseURL is the URL prefix for requests through HTTPClient; MCPEndpoint
// is the MCP endpoint's URL.
const (
	BaseURL     = "http://tccd"
	MCPEndpoint = BaseURL + "/mcp"
)

// Do sends a request and decodes a JSON answer into out (if non-nil).
// A non-2xx answer is returned as *Error.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	resp, err := c.Send(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer to %s %s: %w", method, path, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Send sends a request and returns a 2xx answer with its body unread (the
// caller closes it). A non-2xx answer is returned as *Error; a failure to
// connect wraps ErrUnreachable.
func (c *Client) Send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w on %s: %v (is tccd running? set --socket or TCC_SOCKET)", ErrUnreachable, c.Socket, de.err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return nil, &e
		}
		return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("tccd answered %s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.Do(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json", out)
}

// Status returns the daemon's self-report.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.getJSON(ctx, "/v1/status", &s)
}

// Register uploads a capsule tar for registration, for tenant ("": every
// tenant); a new version keeps its parent's tenant (RegisterAs).
func (c *Client) Register(ctx context.Context, capsuleTar io.Reader, tenant string) (*Registered, error) {
	return c.RegisterAs(ctx, capsuleTar, Tenancy{Tenant: tenant, Set: tenant != ""})
}

// Tenancy is the tenant a registration asks for. Without Set, a new
// version keeps its parent's tenant and a first version is for every
// tenant. With Set, Tenant ("" = every tenant) must be the parent's unless
// Change is set too.
type Tenancy struct {
	Tenant string
	Set    bool
	Change bool
}

func (t Tenancy) query() string {
	v := url.Values{}
	if t.Set {
		v.Set("tenant", t.Tenant)
	}
	if t.Change {
		v.Set("change_tenant", "1")
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// RegisterAs uploads a capsule tar for registration with a tenancy.
func (c *Client) RegisterAs(ctx context.Context, capsuleTar io.Reader, t Tenancy) (*Registered, error) {
	var r Registered
	return &r, c.Do(ctx, http.MethodPost, "/v1/cells"+t.query(), capsuleTar, "application/x-tar", &r)
}

// Cells lists every name with its head.
func (c *Client) Cells(ctx context.Context) ([]CellSummary, error) {
	var out []CellSummary
	return out, c.getJSON(ctx, "/v1/cells", &out)
}

// Cell resolves a name, identity or identity prefix.
func (c *Client) Cell(ctx context.Context, ref string) (*Cell, error) {
	var out Cell
	return &out, c.getJSON(ctx, "/v1/cells/"+url.PathEscape(ref), &out)
}

// Lineage returns a name's history.
func (c *Client) Lineage(ctx context.Context, name string) (*Lineage, error) {
	var out Lineage
	return &out, c.getJSON(ctx, "/v1/cells/"+url.PathEscape(name)+"/lineage", &out)
}

// Rollback moves name's head to the identity to, of the same tenant.
func (c *Client) Rollback(ctx context.Context, name, to string) (*HeadMoved, error) {
	return c.RollbackAs(ctx, name, RollbackRequest{To: to})
}

// RollbackAs moves name's head as req says.
func (c *Client) RollbackAs(ctx context.Context, name string, req RollbackRequest) (*HeadMoved, error) {
	var out HeadMoved
	return &out, c.postJSON(ctx, "/v1/cells/"+url.PathEscape(name)+"/rollback", req, &out)
}

// Revoke forbids an identity forever.
func (c *Client) Revoke(ctx context.Context, ref string) (*HeadMoved, error) {
	var out HeadMoved
	return &out, c.postJSON(ctx, "/v1/cells/"+url.PathEscape(ref)+"/revoke", struct{}{}, &out)
}

// Syscalls returns a cell's final seccomp allow-list.
func (c *Client) Syscalls(ctx context.Context, ref string) (*Syscalls, error) {
	var out Syscalls
	return &out, c.getJSON(ctx, "/v1/cells/"+url.PathEscape(ref)+"/syscalls", &out)
}

// Run calls a cell once and returns its outcome, whatever the verdict.
func (c *Client) Run(ctx context.Context, req RunRequest) (*outcome.Outcome, error) {
	var out outcome.Outcome
	return &out, c.Do(ctx, http.MethodPost, "/v1/cells/"+url.PathEscape(req.Cell)+"/run", bytes.NewReader(req.Input), "application/json", &out)
}

// Profile returns the learned behaviour baseline of a cell.
func (c *Client) Profile(ctx context.Context, ref string) (*Profile, json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.getJSON(ctx, "/v1/cells/"+url.PathEscape(ref)+"/profile", &raw); err != nil {
		return nil, nil, err
	}
	var p Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, fmt.Errorf("decode profile: %w", err)
	}
	return &p, raw, nil
}
