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

// ErrUnreachable means no daemon answered on the socket.
var ErrUnreachable = errors.New("cannot reach tccd")

// Client talks to tccd over its Unix socket.
type Client struct {
	Socket string
	Token  string // bearer token, optional; peer credentials are always sent
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		Socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// HTTPClient returns an HTTP client whose every request goes to the daemon's
// socket, whatever the URL's host; use with BaseURL.
func (c *Client) HTTPClient() *http.Client { return c.http }

// BaseURL is the URL prefix for requests through HTTPClient.
const BaseURL = "http://tccd"

// Do sends a JSON request and decodes a JSON answer into out (if non-nil).
// A non-2xx answer is returned as *Error.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, BaseURL+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w on %s: %v (is tccd running? set --socket or TCC_SOCKET)", ErrUnreachable, c.Socket, uerr.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &e
		}
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("tccd answered %s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
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

// Register uploads a capsule tar for registration. tenant "" registers the
// cell for every tenant.
func (c *Client) Register(ctx context.Context, capsuleTar io.Reader, tenant string) (*Registered, error) {
	var r Registered
	path := "/v1/cells"
	if tenant != "" {
		path += "?tenant=" + url.QueryEscape(tenant)
	}
	return &r, c.Do(ctx, http.MethodPost, path, capsuleTar, "application/x-tar", &r)
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

// Rollback moves name's head to the identity to.
func (c *Client) Rollback(ctx context.Context, name, to string) (*HeadMoved, error) {
	var out HeadMoved
	return &out, c.postJSON(ctx, "/v1/cells/"+url.PathEscape(name)+"/rollback", RollbackRequest{To: to}, &out)
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
	return &out, c.postJSON(ctx, "/v1/run", req, &out)
}
