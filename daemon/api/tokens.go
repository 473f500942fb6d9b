package api

import (
	"context"
	"net/url"
	"time"
)

// TokenRequest asks tccd to issue a bearer token for MCP clients.
type TokenRequest struct {
	Tenant string   `json:"tenant"`
	Scopes []string `json:"scopes"`
	TTL    string   `json:"ttl,omitempty"` // Go duration, e.g. "24h" (default 24h)
	Note   string   `json:"note,omitempty"`
}

// IssuedToken is a new token. Token is shown once; tccd keeps only its
// record.
type IssuedToken struct {
	Token     string    `json:"token"`
	JTI       string    `json:"jti"`
	Tenant    string    `json:"tenant"`
	Scopes    []string  `json:"scopes"`
	Issuer    string    `json:"issuer"`
	ExpiresAt time.Time `json:"expires_at"`
	Seq       uint64    `json:"seq"` // the token.issue event
}

// TokenInfo is the record of an issued token (never the token itself).
type TokenInfo struct {
	JTI       string    `json:"jti"`
	Tenant    string    `json:"tenant"`
	Scopes    []string  `json:"scopes"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	IssuedBy  string    `json:"issued_by"`
	Note      string    `json:"note,omitempty"`
	Status    string    `json:"status"` // "active", "expired" or "revoked"
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Seq       uint64    `json:"seq"`
}

// TokenRevoked is the answer to a revocation.
type TokenRevoked struct {
	JTI string `json:"jti"`
	Seq uint64 `json:"seq"` // the token.revoke event
}

// IssueToken issues a bearer token (admin).
func (c *Client) IssueToken(ctx context.Context, req TokenRequest) (*IssuedToken, error) {
	var out IssuedToken
	return &out, c.postJSON(ctx, "/v1/tokens", req, &out)
}

// Tokens lists issued tokens (admin).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	return out, c.getJSON(ctx, "/v1/tokens", &out)
}

// RevokeToken revokes a token by its jti (admin).
func (c *Client) RevokeToken(ctx context.Context, jti string) (*TokenRevoked, error) {
	var out TokenRevoked
	return &out, c.postJSON(ctx, "/v1/tokens/"+url.PathEscape(jti)+"/revoke", struct{}{}, &out)
}
