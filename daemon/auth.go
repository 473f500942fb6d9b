package daemon

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/peer"
	"github.com/trustcells/tcc/mcp"
)

// caller is who sent a request, as far as the daemon can prove it.
type caller struct {
	ID      string // "uid:1000", "jti:…" for a token, "tcp:anonymous"
	UID     uint32
	Peer    bool // UID comes from SO_PEERCRED
	Admin   bool
	Tenant  string    // "" = no tenant (admins see every tenant)
	Scopes  []string  // what the caller may do over MCP
	Expires time.Time // a token's expiry; zero otherwise
}

// sees reports whether c may see something of tenant ("" = every tenant).
func (c caller) sees(tenant string) bool { return c.Admin || tenant == "" || tenant == c.Tenant }

func (c caller) mcp() *mcp.Caller {
	return &mcp.Caller{ID: c.ID, Tenant: c.Tenant, Admin: c.Admin, Scopes: c.Scopes, Expires: c.Expires}
}

func callerFrom(c *mcp.Caller) caller {
	return caller{ID: c.ID, Admin: c.Admin, Tenant: c.Tenant, Scopes: c.Scopes, Expires: c.Expires}
}

// authenticate says who sent r:
//
//   - a request with an Authorization header is the token's caller, and
//     only if the token verifies (even from root: a token narrows);
//   - otherwise a Unix-socket peer by its credentials: root and the admin
//     group are admins; other users get the tenant and scopes the tenants
//     file gives them;
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
	c := caller{ID: cred.String(), UID: cred.UID, Peer: true}
	c.Admin = cred.UID == 0 || (d.adminGID >= 0 && d.inGroup(cred, uint32(d.adminGID)))
	if c.Admin {
		c.Scopes = mcp.Scopes
		return c, nil
	}
	groups, _ := peer.Groups(cred)
	c.Tenant, c.Scopes = d.tenants.Load().ofPeer(cred.UID, cred.GID, groups)
	return c, nil
}

// refuseAuth answers a request authenticate refused.
func (d *Daemon) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	ae, ok := err.(*mcp.AuthError)
	if !ok {
		d.log.Error("authenticate", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, &api.Error{Code: api.CodeInternal, Message: err.Error()})
		return
	}
	d.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Msg)
	code := api.CodeUnauthorized
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tccd", error="`+ae.Code+`", error_description="`+strings.ReplaceAll(ae.Msg, `"`, `'`)+`"`)
	} else {
		code = api.CodeForbidden
	}
	writeJSON(w, ae.Status, &api.Error{Code: code, Message: ae.Msg})
}

func (d *Daemon) inGroup(cred peer.Cred, gid uint32) bool {
	if cred.GID == gid {
		return true
	}
	groups, err := peer.Groups(cred)
	if err != nil {
		return false
	}
	return slices.Contains(groups, gid)
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
	return c.mcp(), nil
}
