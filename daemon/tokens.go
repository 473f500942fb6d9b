package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// Bearer tokens are EdDSA JWTs signed with the daemon's own key
// (<state>/keys/tcc-token.key, created on first start, root-only). Every
// issued token has a record under x/token/<jti> and a token.issue event;
// a revocation is x/token-revoked/<jti> and a token.revoke event. A token
// is accepted only while its signature, issuer and expiry verify, its
// record exists and agrees with it, and it is not revoked: checked on
// every request.
const (
	tokenIssuer     = "tccd"
	tokenKeyFile    = "tcc-token.key"
	defaultTokenTTL = 24 * time.Hour
	maxTokenTTL     = 366 * 24 * time.Hour
	tokenPrefix     = ledger.PrefixExternal + "token/"
	revokedPrefix   = ledger.PrefixExternal + "token-revoked/"

	tokenCallerPrefix = "jti:" // a token's caller is jti:<jti>
)

// tokenKey signs and verifies tokens.
type tokenKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string // first 16 hex digits of the public key's SHA-256
}

// loadOrCreateTokenKey loads the token signing key, creating it on first
// start. A key file others can read is refused.
func loadOrCreateTokenKey(path string) (*tokenKey, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("token key: %w", err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token key %s is readable by others (mode %04o): anyone who reads it can mint tokens; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("token key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token key %s: not an Ed25519 key", path)
	}
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return &tokenKey{priv: priv, pub: pub, kid: hex.EncodeToString(sum[:8])}, nil
}

type tokenClaims struct {
	Tenant string `json:"tenant"`
	Scope  string `json:"scope"` // space-separated, as in OAuth 2.0
	jwt.RegisteredClaims
}

// tokenRecord is what the ledger keeps of an issued token.
type tokenRecord struct {
	JTI       string    `json:"jti"`
	Tenant    string    `json:"tenant"`
	Scopes    []string  `json:"scopes"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	IssuedBy  string    `json:"issued_by"`
	Note      string    `json:"note,omitempty"`
	Seq       uint64    `json:"seq"`
}

type tokenRevocation struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	By  string    `json:"by"`
}

func (d *Daemon) issueToken(w http.ResponseWriter, r *http.Request, c caller) error {
	var req api.TokenRequest
	if err := decodeJSON(r, maxJSONBody, &req); err != nil {
		return err
	}
	if err := d.knownTenant(req.Tenant); err != nil {
		return badRequest("token issue: %v (every token belongs to one tenant; use --tenant)", err)
	}
	if len(req.Scopes) == 0 {
		return badRequest("token issue: no scopes; give --scope (%s)", strings.Join(mcp.Scopes, ", "))
	}
	if err := mcp.CheckScopes(req.Scopes); err != nil {
		return badRequest("token issue: %v", err)
	}
	ttl := defaultTokenTTL
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > maxTokenTTL {
			return badRequest("token issue: ttl %q: want a positive Go duration up to %s, e.g. 24h", req.TTL, maxTokenTTL)
		}
	}
	if len(req.Note) > 256 {
		return badRequest("token issue: note longer than 256 bytes")
	}
	scopes := slices.Clone(req.Scopes)
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	now := time.Now().UTC().Truncate(time.Second)
	rec := tokenRecord{
		JTI:       uuid.Must(uuid.NewV7()).String(),
		Tenant:    req.Tenant,
		Scopes:    scopes,
		IssuedAt:  now,
		ExpiresAt: now.Add(ttl),
		IssuedBy:  c.ID,
		Note:      req.Note,
	}
	claims := tokenClaims{Tenant: rec.Tenant, Scope: strings.Join(scopes, " "), RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Subject:   "tenant:" + rec.Tenant,
		ID:        rec.JTI,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(rec.ExpiresAt),
	}}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = d.tokenKey.kid
	signed, err := tok.SignedString(d.tokenKey.priv)
	if err != nil {
		return fmt.Errorf("sign token: %w", err)
	}
	ev := &ledger.Event{Type: ledger.TypeTokenIssue, TraceID: ledger.NewTraceID(), Tenant: rec.Tenant, Caller: c.ID,
		Attrs: map[string]string{"jti": rec.JTI, "scopes": claims.Scope, "expires_at": rec.ExpiresAt.Format(time.RFC3339)}}
	seq, err := d.ledger.Append(r.Context(), ev, func(tx *ledger.Txn) error {
		rec.Seq = tx.Event().Seq
		b, _ := json.Marshal(rec)
		return tx.Set([]byte(tokenPrefix+rec.JTI), b)
	})
	if err != nil {
		return err
	}
	d.log.Info("token issued", "jti", rec.JTI, logTenant, rec.Tenant, "scopes", claims.Scope, "expires", rec.ExpiresAt, logCaller, c.ID, logSeq, seq)
	writeJSON(w, http.StatusCreated, api.IssuedToken{Token: signed, JTI: rec.JTI, Tenant: rec.Tenant, Scopes: scopes, Issuer: tokenIssuer, ExpiresAt: rec.ExpiresAt, Seq: seq})
	return nil
}

func (d *Daemon) listTokens(w http.ResponseWriter, r *http.Request, c caller) error {
	out := []api.TokenInfo{}
	err := d.ledger.Scan([]byte(tokenPrefix), func(_, v []byte) error {
		var rec tokenRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: token record: %v", ledger.ErrCorrupt, err)
		}
		ti := api.TokenInfo{JTI: rec.JTI, Tenant: rec.Tenant, Scopes: rec.Scopes, IssuedAt: rec.IssuedAt, ExpiresAt: rec.ExpiresAt, IssuedBy: rec.IssuedBy, Note: rec.Note, Seq: rec.Seq, Status: "active"}
		if time.Now().After(rec.ExpiresAt) {
			ti.Status = "expired"
		}
		out = append(out, ti)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range out {
		if rv, err := d.revocation(out[i].JTI); err == nil {
			out[i].Status, out[i].RevokedAt = "revoked", rv.At
		} else if !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (d *Daemon) revocation(jti string) (*tokenRevocation, error) {
	b, err := d.ledger.Get([]byte(revokedPrefix + jti))
	if err != nil {
		return nil, err
	}
	var rv tokenRevocation
	if err := json.Unmarshal(b, &rv); err != nil {
		return nil, fmt.Errorf("%w: token revocation: %v", ledger.ErrCorrupt, err)
	}
	return &rv, nil
}

func (d *Daemon) revokeToken(w http.ResponseWriter, r *http.Request, c caller) error {
	jti := r.PathValue("jti")
	if _, err := uuid.Parse(jti); err != nil {
		return badRequest("token revoke: %q is not a token id (a UUID; tccctl token list shows them)", jti)
	}
	var tenant string
	ev := &ledger.Event{Type: ledger.TypeTokenRevoke, TraceID: ledger.NewTraceID(), Caller: c.ID, Attrs: map[string]string{"jti": jti}}
	seq, err := d.ledger.Append(r.Context(), ev, func(tx *ledger.Txn) error {
		b, err := tx.Get([]byte(tokenPrefix + jti))
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("token %s: %w (never issued by this tccd)", jti, ledger.ErrNotFound)
		} else if err != nil {
			return err
		}
		var rec tokenRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("%w: token record: %v", ledger.ErrCorrupt, err)
		}
		if _, err := tx.Get([]byte(revokedPrefix + jti)); err == nil {
			return fmt.Errorf("token %s: %w", jti, ledger.ErrRevoked)
		}
		ev := tx.Event()
		ev.Tenant, tenant = rec.Tenant, rec.Tenant
		rv, _ := json.Marshal(tokenRevocation{Seq: ev.Seq, At: time.Unix(0, ev.TimeNS).UTC(), By: c.ID})
		return tx.Set([]byte(revokedPrefix+jti), rv)
	})
	if err != nil {
		return err
	}
	d.log.Info("token revoked", "jti", jti, logTenant, tenant, logCaller, c.ID, logSeq, seq)
	if d.mcp != nil { // its streams and sessions end now, not at their next request
		d.mcp.Disconnect(func(mc *mcp.Caller) bool { return mc.ID == tokenCallerPrefix+jti })
	}
	writeJSON(w, http.StatusOK, api.TokenRevoked{JTI: jti, Seq: seq})
	return nil
}

// verifyToken checks a bearer token and returns its caller. Every refusal
// is an *mcp.AuthError (401) that says what was wrong.
func (d *Daemon) verifyToken(raw string) (caller, error) {
	refuse := func(format string, args ...any) (caller, error) {
		return caller{}, &mcp.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Msg: fmt.Sprintf(format, args...)}
	}
	var cl tokenClaims
	_, err := jwt.ParseWithClaims(raw, &cl, func(*jwt.Token) (any, error) { return d.tokenKey.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(5*time.Second))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		exp := "its expiry"
		if cl.ExpiresAt != nil {
			exp = cl.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return refuse("bearer token %s expired at %s; issue a new one (tccctl token issue)", cl.ID, exp)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("bearer token signature does not verify: it was not issued by this tccd, or it was altered")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("bearer token is not a JWT")
	case err != nil:
		return refuse("bearer token refused: %v", err)
	}
	b, err := d.ledger.Get([]byte(tokenPrefix + cl.ID))
	if errors.Is(err, ledger.ErrNotFound) {
		return refuse("bearer token %s is not in this tccd's ledger (issued before its state was reset?)", cl.ID)
	} else if err != nil {
		return caller{}, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return caller{}, fmt.Errorf("%w: token record: %v", ledger.ErrCorrupt, err)
	}
	if rec.Tenant != cl.Tenant || strings.Join(rec.Scopes, " ") != cl.Scope {
		return refuse("bearer token %s does not match its record", cl.ID)
	}
	if !d.tenants.Load().names(rec.Tenant) {
		return refuse("bearer token %s is for tenant %s, which is no longer in the tenants file", cl.ID, rec.Tenant)
	}
	if rv, err := d.revocation(cl.ID); err == nil {
		return refuse("bearer token %s was revoked at %s (ledger event %d)", cl.ID, rv.At.Format(time.RFC3339), rv.Seq)
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return caller{}, err
	}
	return caller{ID: tokenCallerPrefix + cl.ID, Tenant: rec.Tenant, Scopes: rec.Scopes, Expires: rec.ExpiresAt}, nil
}

// tokenKeyPath is where the token signing key lives.
func (d *Daemon) tokenKeyPath() string { return filepath.Join(d.cfg.StateDir, "keys", tokenKeyFile) }
