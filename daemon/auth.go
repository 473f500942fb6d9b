package daemon

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/peer"
	"github.com/trustcells/tcc/mcp"
)

// caller is who sent a request, as far as the daemon can prove it: the
// MCP layer's Caller, so both layers judge by the same fields (Has, Sees).
type caller = mcp.Caller

// authenticate says who sent r:
//
//   - a request with an Authorization header is the token's caller, and
//     only if the token verifies (even from root: a token narrows);
//   - otherwise a Unix-socket peer by the credentials the kernel recorded
//     when it connected: root and the admin group are admins; other users
//     get the tenant and scopes the tenants file gives them;
//   - otherwise (loopback TCP without a token) the tenants file's anonymous
//     identity, if it has one.
//
// A refusal is an *mcp.AuthError.
func (d *Daemon) authenticate(r *http.Request) (caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return caller{}, &mcp.AuthError{Status: http.StatusUnauthorized, Code: "invalid_request", Msg: "Authorization header: want \"Bearer <token>\""}
		}
		return d.verifyToken(strings.TrimSpace(tok))
	}
	cred, ok := peerOf(r.Context())
	if !ok {
		if a := d.tenants.Load().anon; a != nil && viaTCP(r.Context()) {
			return caller{ID: "tcp:anonymous", Tenant: a.Tenant, Scopes: a.Scopes}, nil
		}
		return caller{}, &mcp.AuthError{Status: http.StatusUnauthorized, Code: "invalid_request",
			Msg: "no bearer token: over TCP tccd knows callers only by a token (tccctl token issue), unless the tenants file grants anonymous access"}
	}
	c := caller{ID: cred.String()}
	if d.isAdmin(cred) {
		c.Admin, c.Scopes = true, mcp.Scopes
		return c, nil
	}
	c.Tenant, c.Scopes = d.tenants.Load().ofPeer(cred.UID, cred.GID, cred.Groups)
	return c, nil
}

// isAdmin: root, or a member of the admin group when the peer connected.
func (d *Daemon) isAdmin(cred peer.Cred) bool {
	if cred.UID == 0 {
		return true
	}
	if d.adminGID < 0 {
		return false
	}
	gid := uint32(d.adminGID)
	return cred.GID == gid || slices.Contains(cred.Groups, gid)
}

// refuseAuth answers a request authenticate refused. A failure to decide
// (the ledger cannot be read) is 503, not a refusal: the caller did
// nothing wrong, and the details stay in the log.
func (d *Daemon) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	var ae *mcp.AuthError
	if !errors.As(err, &ae) {
		d.log.Error("authenticate", logPath, r.URL.Path, logErr, err)
		writeJSON(w, http.StatusServiceUnavailable, &api.Error{Code: api.CodeUnavailable, Message: "tccd cannot check your credentials right now (see its log); retry shortly"})
		return
	}
	d.log.Info("request refused", "method", r.Method, logPath, r.URL.Path, "status", ae.Status, logErr, ae.Msg)
	code := api.CodeForbidden
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", ae.Challenge())
		code = api.CodeUnauthorized
	}
	writeJSON(w, ae.Status, &api.Error{Code: code, Message: ae.Msg})
}

// tcpKey marks requests that came over the loopback TCP listener.
type tcpKey struct{}

func viaTCP(ctx context.Context) bool { v, _ := ctx.Value(tcpKey{}).(bool); return v }

// mcpAuth is the daemon as the MCP endpoint's Authenticator.
type mcpAuth struct{ d *Daemon }

func (a mcpAuth) Authenticate(r *http.Request) (*mcp.Caller, error) {
	c, err := a.d.authenticate(r)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
