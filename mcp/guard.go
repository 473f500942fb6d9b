package mcp

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
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

type (
	tokenInfoKey struct{}
	peekKey      struct{}
)

// peeked is what the guard learnt from a POST body.
type peeked struct {
	initialize bool // an initialize request: a new session
	listen     bool // a subscriptions/listen request: a stream
}

// peerBearer stands in for a bearer token on requests whose identity comes
// from peer credentials, so that the SDK's bearer middleware (the only way
// to hand it an identity) accepts them; it carries no authority: the
// identity is the one the guard put in the context.
const peerBearer = "tcc-peer-credentials"

// guard runs before the SDK: Origin, identity, size, JSON-RPC shape and
// each method's scope. Everything it refuses gets a JSON-RPC error body and
// an HTTP status that says why (401, 403, 413, 400).
func (s *Server) guard(w http.ResponseWriter, r *http.Request) {
	if err := checkOrigin(r.Header.Get("Origin")); err != nil {
		writeError(w, http.StatusForbidden, jsonrpc.ID{}, CodeForbidden, err.Error())
		return
	}
	c, err := s.opts.Auth.Authenticate(r)
	if err != nil {
		var ae *AuthError
		if !errors.As(err, &ae) {
			// The daemon could not decide (its ledger failed): not the
			// caller's fault, and the details are for the log.
			s.log.Error("mcp: authenticate", logErr, err)
			writeError(w, http.StatusServiceUnavailable, jsonrpc.ID{}, jsonrpc.CodeInternalError, "tccd cannot check your credentials right now (see its log); retry shortly")
			return
		}
		var code int64 = CodeUnauthorized
		if ae.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", ae.Challenge())
		} else {
			code = CodeForbidden
		}
		writeError(w, ae.Status, jsonrpc.ID{}, code, ae.Msg)
		return
	}
	var p *peeked
	if r.Method == http.MethodPost {
		var ok bool
		if p, ok = s.peek(w, r, c); !ok {
			return
		}
		if p.initialize && r.Header.Get("Mcp-Session-Id") == "" && !c.Admin && s.sessionsOf(c.ID) >= s.opts.MaxSessions {
			writeError(w, http.StatusTooManyRequests, jsonrpc.ID{}, CodeTooMany,
				fmt.Sprintf("%s already holds %d MCP sessions, tccd's cap for one caller; close some (or let them idle out) and retry", c.ID, s.opts.MaxSessions))
			return
		}
	}
	// Every request can be cut off (Disconnect); a stream (the GET stream
	// of a session, a subscriptions/listen) also ends when the identity
	// expires: it is authorized once, at its start.
	ctx, cancel := context.WithCancel(r.Context())
	if !c.Expires.IsZero() && (r.Method == http.MethodGet || p != nil && p.listen) {
		ctx, cancel = context.WithDeadline(r.Context(), c.Expires)
	}
	defer cancel()
	defer s.track(c, cancel)()
	r = r.WithContext(ctx)
	ti := &auth.TokenInfo{Scopes: c.Scopes, Expiration: c.Expires, UserID: c.ID, Extra: map[string]any{callerKey: c}}
	if c.Admin {
		ti.Scopes = Scopes
	}
	ctx = context.WithValue(ctx, tokenInfoKey{}, ti)
	r = r.WithContext(context.WithValue(ctx, peekKey{}, p))
	if r.Header.Get("Authorization") == "" {
		r.Header = r.Header.Clone()
		r.Header.Set("Authorization", "Bearer "+peerBearer)
	}
	s.inject.ServeHTTP(w, r)
}

// checkOrigin accepts no Origin (not a browser) and local origins only: a
// web page elsewhere must never drive a local tccd (DNS rebinding, CSRF).
func checkOrigin(origin string) error {
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not local: tccd serves MCP to local clients only (origins http(s)://localhost, 127.0.0.0/8 or [::1])", origin)
}

// bodyTimeout bounds the time a client may take to send a request body;
// the deadline is cleared once the body is read (a deadline left in place
// would cut the answer's stream).
const bodyTimeout = time.Minute

// peek reads and checks a POST body, then puts it back for the SDK.
func (s *Server) peek(w http.ResponseWriter, r *http.Request, c *Caller) (*peeked, bool) {
	limit := s.opts.MaxRequest
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeParseError, "reading the request body: "+err.Error())
		return nil, false
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, CodeTooLarge,
			fmt.Sprintf("request body is larger than %d bytes (%s), tccd's cap for one MCP request", limit, sizeText(limit)))
		return nil, false
	}
	msgs, err := decodeBody(body)
	if err != nil {
		var jerr *jsonrpc.Error
		errors.As(err, &jerr)
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jerr.Code, jerr.Message)
		return nil, false
	}
	p := &peeked{}
	for _, m := range msgs {
		req, ok := m.(*jsonrpc.Request)
		if !ok {
			continue
		}
		switch req.Method {
		case "initialize":
			p.initialize = true
		case "subscriptions/listen":
			p.listen = true
		}
		if status, scope, err := s.permit(c, req); err != nil {
			if scope != "" {
				w.Header().Set("WWW-Authenticate", bearerChallenge("error", "insufficient_scope", "scope", scope, "error_description", err.Error()))
			}
			writeError(w, status, req.ID, CodeForbidden, "forbidden: "+err.Error())
			return nil, false
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return p, true
}

// decodeBody parses one JSON-RPC message or a batch; errors are
// *jsonrpc.Error with the code JSON-RPC prescribes.
func decodeBody(body []byte) ([]jsonrpc.Message, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid request: empty body; POST one JSON-RPC 2.0 message"}
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "parse error: the body is not JSON: " + err.Error()}
	}
	raws := []json.RawMessage{body}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		if err := json.Unmarshal(body, &raws); err != nil || len(raws) == 0 {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid request: an empty or malformed batch"}
		}
	}
	msgs := make([]jsonrpc.Message, 0, len(raws))
	for _, raw := range raws {
		m, err := jsonrpc.DecodeMessage(raw)
		if err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid request: not a JSON-RPC 2.0 message: " + err.Error()}
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// permit checks what the guard can check from one request: the method's
// scope, cells:actuate for an actuate-phase tool, and the tenant of a
// vault URI. It returns the HTTP status and, for a missing scope, that
// scope.
func (s *Server) permit(c *Caller, req *jsonrpc.Request) (int, string, error) {
	var params struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
		Ref  struct {
			Type string `json:"type"`
		} `json:"ref"`
	}
	_ = json.Unmarshal(req.Params, &params)
	scope := scopeOf(req.Method)
	if req.Method == "completion/complete" {
		scope = ScopePromptsGet
		if params.Ref.Type == "ref/resource" {
			scope = ScopeResourcesRead
		}
	}
	if scope != "" && !c.Has(scope) {
		return http.StatusForbidden, scope, fmt.Errorf("%s needs scope %s, which %s does not hold", req.Method, scope, c.ID)
	}
	switch req.Method {
	case "tools/call":
		s.mu.Lock()
		e, ok := s.tools[params.Name]
		s.mu.Unlock()
		if ok && c.Sees(e.tenant) && e.actuate && !c.Has(ScopeActuate) {
			return http.StatusForbidden, ScopeActuate, fmt.Errorf("cell %s is an actuate-phase cell: calling it needs scope %s, which %s does not hold", params.Name, ScopeActuate, c.ID)
		}
	case "resources/read", "resources/subscribe":
		if t, ok := vaultTenant(params.URI); ok && !c.Sees(t) {
			return http.StatusForbidden, "", fmt.Errorf("%s belongs to tenant %s; %s is %s", params.URI, t, c.ID, tenantText(c))
		}
	}
	return 0, "", nil
}

// Challenge is the WWW-Authenticate value of a 401 (RFC 6750).
func (e *AuthError) Challenge() string {
	return bearerChallenge("error", e.Code, "error_description", e.Msg)
}

// bearerChallenge is a Bearer challenge of tccd's realm with the given
// parameters (name, value pairs) as RFC 7235 quoted strings.
func bearerChallenge(params ...string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="tccd"`)
	for i := 0; i+1 < len(params); i += 2 {
		b.WriteString(", " + params[i] + `="`)
		for _, r := range params[i+1] {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f:
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}

func tenantText(c *Caller) string {
	if c.Tenant == "" {
		return "in no tenant"
	}
	return "tenant " + c.Tenant
}

// vaultTenant is the tenant a vault:// URI names.
func vaultTenant(uri string) (string, bool) {
	rest, ok := strings.CutPrefix(uri, "vault://")
	if !ok {
		return "", false
	}
	t, _, _ := strings.Cut(rest, "/")
	return t, true
}

// writeError answers with a JSON-RPC error response; id is null when the
// request's id is unknown (JSON-RPC 2.0, section 5).
func writeError(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, msg string) {
	var rawID any
	if id.IsValid() {
		rawID = id.Raw()
	}
	data, _ := json.Marshal(struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      any            `json:"id"`
		Error   *jsonrpc.Error `json:"error"`
	}{"2.0", rawID, &jsonrpc.Error{Code: code, Message: msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// CheckScopes returns an error naming the first of want that is not a
// known scope.
func CheckScopes(want []string) error {
	for _, s := range want {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("unknown scope %q (scopes: %s)", s, strings.Join(Scopes, ", "))
		}
	}
	return nil
}
