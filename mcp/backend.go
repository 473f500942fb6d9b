package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/mcp/prompt"
)

// Scopes a caller may hold. Admins hold all of them.
const (
	ScopeToolsList     = "tools:list"
	ScopeToolsCall     = "tools:call"
	ScopeActuate       = "cells:actuate" // call actuate-phase cells
	ScopeResourcesRead = "resources:read"
	ScopePromptsGet    = "prompts:get"
)

// Scopes lists every scope, in the order documentation shows them.
var Scopes = []string{ScopeToolsList, ScopeToolsCall, ScopeActuate, ScopeResourcesRead, ScopePromptsGet}

// Errors the daemon's implementations return so that this package can
// answer with the right MCP error without knowing the kernel or ledger.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalidInput = errors.New("invalid input")
	ErrBusy         = errors.New("busy")
	ErrForbidden    = errors.New("forbidden")
)

// Caller is who sent a request, as the daemon established it.
type Caller struct {
	ID      string // "uid:1000", "jti:…", "tcp:anonymous"
	Tenant  string // "" = no tenant: sees only what is shared with every tenant
	Admin   bool   // every tenant and every scope
	Scopes  []string
	Expires time.Time // zero when the identity does not expire (peer credentials)
}

// Has reports whether c holds scope.
func (c *Caller) Has(scope string) bool { return c.Admin || slices.Contains(c.Scopes, scope) }

// Sees reports whether c may see something that belongs to tenant; ""
// means shared with every tenant.
func (c *Caller) Sees(tenant string) bool { return c.Admin || tenant == "" || tenant == c.Tenant }

// AuthError refuses a request before MCP sees it: Status 401 (with a
// WWW-Authenticate challenge naming Code) or 403.
type AuthError struct {
	Status int
	Code   string // OAuth 2.0 bearer error code: invalid_request, invalid_token
	Msg    string
}

func (e *AuthError) Error() string { return e.Msg }

// Authenticator says who sent an HTTP request: a bearer token, the peer
// credentials of a Unix-socket connection, or the configured identity of
// an anonymous loopback TCP client. An *AuthError refuses it.
type Authenticator interface {
	Authenticate(r *http.Request) (*Caller, error)
}

// Cell is the head of a cell name, as tools/list shows it.
type Cell struct {
	Name     string
	Identity string
	Tenant   string // "" = every tenant
	Manifest *manifest.Manifest
}

// Cells is the catalogue.
type Cells interface {
	// Heads lists the head of every name that has one.
	Heads(ctx context.Context) ([]Cell, error)
	// Head is the head of name; an error wrapping ErrNotFound if none.
	Head(ctx context.Context, name string) (*Cell, error)
	// Lineage is the history of name as c may see it, as JSON
	// (ErrNotFound if c may see none of it).
	Lineage(ctx context.Context, c *Caller, name string) (json.RawMessage, error)
}

// Progress is one progress report of a running cell.
type Progress struct {
	Progress float64
	Total    float64
	Message  string
}

// Runner runs one call of a cell's head through the daemon's audited call
// path, which checks c's scopes (tools:call, cells:actuate) against the
// cell that runs. An error wrapping ErrInvalidInput means the input was
// refused before any sandbox was made; ErrBusy that admission refused it;
// ErrNotFound that the name has no head (for c); ErrForbidden that c may
// not call it.
type Runner interface {
	Call(ctx context.Context, c *Caller, cell string, input json.RawMessage, progress func(Progress)) (*outcome.Outcome, error)
}

// Audit is the ledger as resources show it.
type Audit interface {
	// Checkpoint is the latest signed checkpoint (a signed note).
	Checkpoint() []byte
	// Event is the stored event seq if c may see it (ErrNotFound otherwise).
	Event(ctx context.Context, c *Caller, seq uint64) (json.RawMessage, error)
	// Recent is up to n of the newest events c may see, newest last.
	Recent(ctx context.Context, c *Caller, n int) ([]json.RawMessage, error)
}

// Document is one vault document.
type Document struct {
	Tenant  string
	Path    string
	Alias   string // another URI it is published under, or ""
	MIME    string
	Digest  string // sha256:<hex> of the content
	Size    int64
	Updated time.Time
}

// URI is the document's vault URI, vault://TENANT/PATH.
func (d *Document) URI() string { return "vault://" + d.Tenant + "/" + d.Path }

// Vault holds the tenants' documents.
type Vault interface {
	Documents(ctx context.Context) ([]Document, error)
	// Lookup finds a document by its vault URI or its alias (ErrNotFound).
	Lookup(ctx context.Context, uri string) (*Document, error)
	// Read returns the content of d for c, checked against its digest,
	// and records the read in the ledger before returning it.
	Read(ctx context.Context, c *Caller, d *Document) ([]byte, error)
}

// Prompt is the head of a prompt name.
type Prompt struct {
	*prompt.Prompt
	Identity string
	Tenant   string // "" = every tenant
}

// Prompts holds the registered prompt templates.
type Prompts interface {
	Heads(ctx context.Context) ([]Prompt, error)
	Head(ctx context.Context, name string) (*Prompt, error) // ErrNotFound
}
