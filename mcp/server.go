package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Defaults of Options.
const (
	DefaultMaxRequest  = 4 << 20 // bytes of one HTTP request body
	DefaultMaxSessions = 32      // stateful sessions of one caller
)

// Log field names.
const (
	logCell     = "cell"
	logErr      = "err"
	logIdentity = "identity"
)

// Server-defined JSON-RPC error codes (the -32000..-32099 range JSON-RPC
// leaves to implementations).
const (
	CodeUnauthorized = -32001 // no valid identity (HTTP 401)
	CodeForbidden    = -32003 // the caller lacks a scope or a tenant (HTTP 403)
	CodeTooLarge     = -32004 // the request body is over the cap (HTTP 413)
	CodeTooMany      = -32005 // the caller holds too many sessions (HTTP 429)
)

// Options configure a Server. Every interface is required.
type Options struct {
	Version string // tccd's version, shown as serverInfo.version

	Auth    Authenticator
	Cells   Cells
	Runner  Runner
	Audit   Audit
	Vault   Vault
	Prompts Prompts

	// MaxRequest caps a request body (default DefaultMaxRequest).
	MaxRequest int64
	// SessionTimeout closes stateful sessions idle this long (default 1h).
	SessionTimeout time.Duration
	// MaxSessions caps the stateful sessions one caller other than an
	// admin may hold (default DefaultMaxSessions).
	MaxSessions int
	Logger      *slog.Logger
}

// Server is the MCP endpoint. It is an http.Handler; mount it at /mcp.
type Server struct {
	opts      Options
	log       *slog.Logger
	sdk       *sdk.Server
	stateful  http.Handler
	stateless http.Handler
	inject    http.Handler

	mu        sync.Mutex
	tools     map[string]toolEntry // name → who may see and call it
	prompts   map[string]string    // name → tenant
	resources map[string]string    // concrete URI → tenant ("" = every tenant)
	owners    map[string]*Caller   // stateful session id → its caller
	live      map[uint64]liveReq   // requests in flight, to cut a caller off
	nextLive  uint64
}

// liveReq is a request in flight and how to end it.
type liveReq struct {
	c      *Caller
	cancel context.CancelFunc
}

type toolEntry struct {
	tenant  string
	actuate bool
}

// New builds the endpoint and loads the current catalogue, vault and
// prompts into it.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Auth == nil || opts.Cells == nil || opts.Runner == nil || opts.Audit == nil || opts.Vault == nil || opts.Prompts == nil {
		return nil, errors.New("mcp: every backend interface of Options is required")
	}
	if opts.MaxRequest <= 0 {
		opts.MaxRequest = DefaultMaxRequest
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = time.Hour
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		tools:     map[string]toolEntry{},
		prompts:   map[string]string{},
		resources: map[string]string{},
		owners:    map[string]*Caller{},
		live:      map[uint64]liveReq{},
	}
	s.sdk = sdk.NewServer(&sdk.Implementation{Name: "tccd", Title: "TCC Trusted Compute Cells", Version: opts.Version}, &sdk.ServerOptions{
		Instructions: "Tools are TCC cells: signed static binaries, each call run in a throwaway sandbox under the seccomp filter of the cell's signed manifest and recorded in a tamper-evident ledger. " +
			"Resources: tcc://cells/{name} (a cell's contract), tcc://cells/{name}/lineage, tcc://ledger/checkpoint, tcc://ledger/events, and vault://{tenant}/{path} documents.",
		Capabilities: &sdk.ServerCapabilities{
			//lint:ignore SA1019 logging is deprecated in 2026-07-28 but hosts on 2025-11-25 still use it
			Logging:     &sdk.LoggingCapabilities{},
			Tools:       &sdk.ToolCapabilities{ListChanged: true},
			Prompts:     &sdk.PromptCapabilities{ListChanged: true},
			Resources:   &sdk.ResourceCapabilities{ListChanged: true, Subscribe: true},
			Completions: &sdk.CompletionCapabilities{},
		},
		CompletionHandler:  s.complete,
		SubscribeHandler:   s.subscribe,
		UnsubscribeHandler: func(context.Context, *sdk.UnsubscribeRequest) error { return nil },
		Logger:             quiet(opts.Logger),
	})
	s.sdk.AddReceivingMiddleware(s.authorize)
	s.addStaticResources()
	if err := s.load(ctx); err != nil {
		return nil, err
	}

	hopts := &sdk.StreamableHTTPOptions{MaxRequestBodyBytes: opts.MaxRequest, Logger: quiet(opts.Logger)}
	getServer := func(*http.Request) *sdk.Server { return s.sdk }
	stateful := *hopts
	stateful.SessionTimeout = opts.SessionTimeout
	s.stateful = sdk.NewStreamableHTTPHandler(getServer, &stateful)
	stateless := *hopts
	stateless.Stateless = true
	// A dropped connection cancels the call, which kills its sandbox.
	stateless.PropagateRequestCancellation = true
	s.stateless = sdk.NewStreamableHTTPHandler(getServer, &stateless)
	// The SDK reads the caller from the request context, where only its
	// bearer-token middleware may put it: let that middleware "verify" the
	// identity the guard already established (see guard.go).
	s.inject = auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		if ti, ok := ctx.Value(tokenInfoKey{}).(*auth.TokenInfo); ok {
			return ti, nil
		}
		return nil, auth.ErrInvalidToken
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(http.HandlerFunc(s.dispatch))
	return s, nil
}

// quiet drops the SDK's own info-level chatter (one line per session and
// subscription) from the daemon's log.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

// load publishes every tool, prompt and vault document (at start; later
// changes come one by one: HeadsChanged, PromptChanged, DocumentChanged).
func (s *Server) load(ctx context.Context) error {
	cells, err := s.opts.Cells.Heads(ctx)
	if err != nil {
		return fmt.Errorf("mcp: load cells: %w", err)
	}
	for i := range cells {
		s.setTool(&cells[i])
	}
	ps, err := s.opts.Prompts.Heads(ctx)
	if err != nil {
		return fmt.Errorf("mcp: load prompts: %w", err)
	}
	for i := range ps {
		s.setPrompt(&ps[i])
	}
	docs, err := s.opts.Vault.Documents(ctx)
	if err != nil {
		return fmt.Errorf("mcp: load vault: %w", err)
	}
	for i := range docs {
		s.setDocument(&docs[i])
	}
	return nil
}

// HeadsChanged updates the tool of name after a registration, rollback or
// revocation; MCP clients get notifications/tools/list_changed.
func (s *Server) HeadsChanged(ctx context.Context, name string) {
	c, err := s.opts.Cells.Head(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		s.removeTool(name)
	case err != nil:
		s.log.Error("mcp: cannot load the head of a cell; its tool is unchanged", logCell, name, logErr, err)
	default:
		s.setTool(c)
	}
	for _, uri := range []string{cellURI(name), cellURI(name) + "/lineage"} {
		_ = s.sdk.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: uri})
	}
}

// PromptChanged updates the prompt name after a registration.
func (s *Server) PromptChanged(ctx context.Context, name string) {
	p, err := s.opts.Prompts.Head(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		s.mu.Lock()
		delete(s.prompts, name)
		s.mu.Unlock()
		s.sdk.RemovePrompts(name)
	case err != nil:
		s.log.Error("mcp: cannot load the head of a prompt; it is unchanged", "prompt", name, logErr, err)
	default:
		s.setPrompt(p)
	}
}

// DocumentChanged publishes a vault document that was added or replaced;
// subscribers of its URIs get notifications/resources/updated.
func (s *Server) DocumentChanged(ctx context.Context, d *Document, oldAlias string) {
	if oldAlias != "" && oldAlias != d.Alias {
		s.mu.Lock()
		delete(s.resources, oldAlias)
		s.mu.Unlock()
		s.sdk.RemoveResources(oldAlias)
	}
	s.setDocument(d)
	for _, uri := range []string{d.URI(), d.Alias} {
		if uri != "" {
			_ = s.sdk.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: uri})
		}
	}
}

// Close ends every session: the calls they run are cancelled (their
// sandboxes killed and wiped). tccd calls it when it stops.
func (s *Server) Close() {
	for ss := range s.sdk.Sessions() {
		_ = ss.Close()
	}
}

// sessionsOf counts the live stateful sessions of a caller, and forgets
// the owners of sessions that ended.
func (s *Server) sessionsOf(id string) int {
	live := map[string]bool{}
	for ss := range s.sdk.Sessions() {
		live[ss.ID()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sid, owner := range s.owners {
		switch {
		case !live[sid]:
			delete(s.owners, sid)
		case owner.ID == id:
			n++
		}
	}
	return n
}

// track registers a request in flight until the returned func is called.
func (s *Server) track(c *Caller, cancel context.CancelFunc) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextLive++
	id := s.nextLive
	s.live[id] = liveReq{c, cancel}
	return func() {
		s.mu.Lock()
		delete(s.live, id)
		s.mu.Unlock()
	}
}

// Disconnect ends the requests in flight (streams, calls: their sandboxes
// are killed) and the sessions of every caller match selects. The daemon
// calls it when a token is revoked or the tenants file changes: a stream
// authorized once must not outlive its authority. The callers may come
// back, and are authenticated anew.
func (s *Server) Disconnect(match func(*Caller) bool) {
	s.mu.Lock()
	for _, lr := range s.live {
		if match(lr.c) {
			lr.cancel()
		}
	}
	sessions := map[string]bool{}
	for sid, c := range s.owners {
		if match(c) {
			sessions[sid] = true
		}
	}
	s.mu.Unlock()
	for ss := range s.sdk.Sessions() {
		if sessions[ss.ID()] {
			_ = ss.Close()
		}
	}
}

// ServeHTTP serves the MCP endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.guard(w, r) }

// dispatch sends a request that passed the guard to the stateless or the
// stateful handler.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(peekKey{}).(*peeked)
	if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" && (p == nil || !p.initialize) {
		s.stateless.ServeHTTP(w, r)
		return
	}
	s.stateful.ServeHTTP(w, r)
}

// authorize is the SDK receiving middleware: it checks each method's scope
// again (the guard did for HTTP; this covers every path) and filters lists
// by the caller's tenant.
func (s *Server) authorize(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		c := callerOf(req)
		if scope := scopeOf(method); scope != "" && !c.Has(scope) {
			return nil, forbidden("%s needs scope %s; %s does not hold it", method, scope, c.ID)
		}
		if ss, ok := req.GetSession().(*sdk.ServerSession); ok && method == "initialize" && ss.ID() != "" {
			s.mu.Lock()
			s.owners[ss.ID()] = c // sessionsOf, Disconnect
			s.mu.Unlock()
		}
		res, err := next(ctx, method, req)
		if err != nil {
			return res, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r := res.(type) {
		case *sdk.ListToolsResult:
			r.Tools = slices.DeleteFunc(slices.Clone(r.Tools), func(t *sdk.Tool) bool {
				e, ok := s.tools[t.Name]
				return !ok || !c.Sees(e.tenant)
			})
		case *sdk.ListPromptsResult:
			r.Prompts = slices.DeleteFunc(slices.Clone(r.Prompts), func(p *sdk.Prompt) bool {
				t, ok := s.prompts[p.Name]
				return !ok || !c.Sees(t)
			})
		case *sdk.ListResourcesResult:
			r.Resources = slices.DeleteFunc(slices.Clone(r.Resources), func(res *sdk.Resource) bool {
				t, ok := s.resources[res.URI]
				return !ok || !c.Sees(t)
			})
		}
		return res, nil
	}
}

// scopeOf is the scope a method needs; "" for the protocol's own methods.
func scopeOf(method string) string {
	switch method {
	case "tools/list":
		return ScopeToolsList
	case "tools/call":
		return ScopeToolsCall
	case "resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe":
		return ScopeResourcesRead
	case "prompts/list", "prompts/get":
		return ScopePromptsGet
	}
	return ""
}

// callerKey is where the guard puts the *Caller in the SDK's TokenInfo.
const callerKey = "tcc.caller"

// callerOf is the caller of an SDK request; one with no identity holds no
// scope.
func callerOf(req sdk.Request) *Caller {
	if req != nil {
		if ex := req.GetExtra(); ex != nil && ex.TokenInfo != nil {
			if c, ok := ex.TokenInfo.Extra[callerKey].(*Caller); ok {
				return c
			}
		}
	}
	return &Caller{ID: "anonymous"}
}

func forbidden(format string, args ...any) error {
	return &jsonrpc.Error{Code: CodeForbidden, Message: "forbidden: " + fmt.Sprintf(format, args...)}
}

func invalidParams(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}
