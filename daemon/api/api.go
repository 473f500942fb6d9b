// Package api is the daemon's control API as seen from both ends: the JSON
// types on the wire and the client tccctl uses. It is plain data plus an
// HTTP client over the daemon's Unix socket; it must stay free of anything
// that needs root, cgo or the kernel, so that tccctl stays a small static
// program.
package api

import (
	"encoding/json"
	"time"
)

// DefaultSocket is where tccd listens and tccctl looks unless told otherwise.
const DefaultSocket = "/run/tcc/tcc.sock"

// Error is the body of every non-2xx response.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Code classifies an error so that clients can react without parsing text.
type Code string

const (
	CodeBadRequest   Code = "bad_request"  // malformed request or input
	CodeNotFound     Code = "not_found"    // no such cell, event or token
	CodeAmbiguous    Code = "ambiguous"    // an identity prefix matches several cells
	CodeUnauthorized Code = "unauthorized" // the bearer token was refused (HTTP 401)
	CodeForbidden    Code = "forbidden"    // the caller may not do this
	CodeVerification Code = "verification" // signature, digest or trust check failed
	CodeLineage      Code = "lineage"      // parent/head rules refused the change
	CodeExists       Code = "exists"       // already registered
	CodeRevoked      Code = "revoked"      // the identity is revoked
	CodeBusy         Code = "busy"         // admission queue full; retry later
	CodeConflict     Code = "conflict"     // not now: e.g. replaying a call that has not ended
	CodeEvicted      Code = "evicted"      // a replay's input is no longer in the blob store
	CodeTooLarge     Code = "too_large"    // the request body is over its cap (HTTP 413)
	CodeUnavailable  Code = "unavailable"  // a subsystem is not available
	CodeInternal     Code = "internal"
)

// Status is the daemon's self-report.
type Status struct {
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	StateDir  string    `json:"state_dir,omitempty"` // admins only
	Socket    string    `json:"socket,omitempty"`    // admins only
	Kernel    string    `json:"kernel"`
	Cgroups   string    `json:"cgroups"`           // "hybrid" or "unified"
	Cells     int       `json:"cells"`             // names with a head the caller may see
	Trusted   []string  `json:"trusted,omitempty"` // signer key names in the trust file; admins only
	Ledger    Ledger    `json:"ledger"`
	Sandboxes Sandboxes `json:"sandboxes"`
	Monitor   Feature   `json:"monitor"`
	Caller    Caller    `json:"caller"`
}

// Ledger is the audit log's size and latest checkpoint.
type Ledger struct {
	Size       uint64 `json:"size"`
	Checkpoint string `json:"checkpoint,omitempty"` // signed note
	// KeyWarning says why the checkpoint key's location weakens the
	// evidence (it lives on the state disk); "" when it does not.
	KeyWarning string `json:"key_warning,omitempty"`
}

// Sandboxes reports admission.
type Sandboxes struct {
	Running int `json:"running"`
	Queued  int `json:"queued"`
	Max     int `json:"max"`
	Queue   int `json:"queue"`
}

// Feature is an optional kernel feature and why it is missing.
type Feature struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// Caller is who the daemon thinks the caller is.
type Caller struct {
	ID     string   `json:"id"`
	Admin  bool     `json:"admin"`
	Tenant string   `json:"tenant,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// CellSummary is one line of `tccctl cell list`: a name and its head.
type CellSummary struct {
	Name         string    `json:"name"`
	Head         string    `json:"head"`
	Title        string    `json:"title,omitempty"`
	Phase        string    `json:"phase"`
	Versions     int       `json:"versions"`
	Tenant       string    `json:"tenant,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
}

// Cell is a registered identity, as `tccctl cell inspect` shows it.
type Cell struct {
	Identity     string          `json:"identity"`
	Name         string          `json:"name"`
	Parent       string          `json:"parent,omitempty"`
	Signers      []string        `json:"signers"`
	Tenant       string          `json:"tenant,omitempty"`
	Head         bool            `json:"head"`
	Revoked      bool            `json:"revoked"`
	Seq          uint64          `json:"seq"`
	RegisteredAt time.Time       `json:"registered_at"`
	Manifest     json.RawMessage `json:"manifest"` // canonical
}

// LineageEntry is one identity in a name's history, oldest first.
type LineageEntry struct {
	Identity     string    `json:"identity"`
	Parent       string    `json:"parent,omitempty"`
	Seq          uint64    `json:"seq"`
	RegisteredAt time.Time `json:"registered_at"`
	Head         bool      `json:"head"`
	Revoked      bool      `json:"revoked"`
}

// Lineage is a name's history and the head moves made by rollbacks.
type Lineage struct {
	Name    string         `json:"name"`
	Head    string         `json:"head,omitempty"`
	Entries []LineageEntry `json:"entries"`
	Moves   []HeadMove     `json:"moves,omitempty"`
}

// HeadMove is a rollback or a revocation that moved the head.
type HeadMove struct {
	Seq  uint64    `json:"seq"`
	Kind string    `json:"kind"` // "rollback" or "revoke"
	From string    `json:"from"`
	To   string    `json:"to,omitempty"`
	At   time.Time `json:"at"`
}

// Registered is the answer to a registration.
type Registered struct {
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Parent   string `json:"parent,omitempty"`
	Seq      uint64 `json:"seq"`
}

// RollbackRequest moves a name's head to an earlier identity.
// ChangeTenant allows the move when that identity belongs to another
// tenant than the head (or is shared while the head is not, or the other
// way round).
type RollbackRequest struct {
	To           string `json:"to"`
	ChangeTenant bool   `json:"change_tenant,omitempty"`
}

// HeadMoved is the answer to a rollback or revoke.
type HeadMoved struct {
	Name string `json:"name"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"` // "" when the name has no head left
	Seq  uint64 `json:"seq"`
}

// RunRequest calls a cell once: POST /v1/cells/{Cell}/run with Input as
// the body. Cell is a name (its head) or an identity (pinned: it must be
// registered, not revoked).
type RunRequest struct {
	Cell  string
	Input json.RawMessage
}

// Syscalls is a cell's final seccomp allow-list.
type Syscalls struct {
	Identity string   `json:"identity"`
	Groups   []string `json:"groups"`
	Extra    []string `json:"extra"`
	Allowed  []string `json:"allowed"`
}
