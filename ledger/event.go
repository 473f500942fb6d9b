package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/trustcells/tcc/ledger/audit"
)

// The event format belongs to package audit, the offline verifier, so that
// an auditor's tools need not link pebble. These aliases keep the ledger's
// API whole.

// Event types. The catalogue types (cell.*) are written only by Register,
// Rollback and Revoke; Append refuses them so the log and the catalogue
// cannot disagree.
const (
	TypeCellRegister = audit.TypeCellRegister
	TypeCellRollback = audit.TypeCellRollback
	TypeCellRevoke   = audit.TypeCellRevoke
	TypeCallBegin    = audit.TypeCallBegin
	TypeCallEnd      = audit.TypeCallEnd
	TypeCallAborted  = audit.TypeCallAborted
	TypeCallReplay   = audit.TypeCallReplay
	TypeTokenIssue   = audit.TypeTokenIssue
	TypeTokenRevoke  = audit.TypeTokenRevoke
	TypeVaultPut     = audit.TypeVaultPut
	TypeVaultRead    = audit.TypeVaultRead
	TypeDaemonStart  = audit.TypeDaemonStart
	TypeDaemonStop   = audit.TypeDaemonStop
)

// MaxEventSize bounds one encoded event.
const MaxEventSize = audit.MaxEventSize

type (
	// Event is one entry of the audit log; see audit.Event.
	Event = audit.Event
	// Usage is what one call consumed.
	Usage = audit.Usage
	// Wipe is the result of tearing a sandbox down and checking the absence.
	Wipe = audit.Wipe
)

// DecodeEvent parses stored event bytes. Unknown fields are an error.
func DecodeEvent(data []byte) (*Event, error) { return audit.DecodeEvent(data) }

// NewTraceID returns a fresh UUIDv7 for Event.TraceID.
func NewTraceID() string { return audit.NewTraceID() }

// cloneEvent copies e deeply enough that the committer and Mutations never
// share a map or slice with the caller.
func cloneEvent(e *Event) *Event {
	c := *e
	c.Attrs = maps.Clone(e.Attrs)
	c.Violations = slices.Clone(e.Violations)
	c.Monitor = bytes.Clone(e.Monitor)
	if e.Usage != nil {
		u := *e.Usage
		c.Usage = &u
	}
	if e.Wipe != nil {
		w := *e.Wipe
		w.Leftovers = slices.Clone(e.Wipe.Leftovers)
		c.Wipe = &w
	}
	if e.Ref != nil {
		r := *e.Ref
		c.Ref = &r
	}
	return &c
}

func validateEvent(e *Event) error {
	if e.Type == "" {
		return fmt.Errorf("%w: event has no type", ErrInvalid)
	}
	if len(e.Type) > 64 || strings.Trim(e.Type, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
		return fmt.Errorf("%w: event type %q: use lower-case letters, digits, '.', '_' and '-' (at most 64)", ErrInvalid, e.Type)
	}
	if strings.IndexByte(e.Tenant, 0) >= 0 {
		return fmt.Errorf("%w: event tenant contains a NUL byte", ErrInvalid)
	}
	if len(e.Monitor) > 0 && !json.Valid(e.Monitor) {
		return fmt.Errorf("%w: event monitor field is not valid JSON", ErrInvalid)
	}
	switch {
	case e.Type == TypeCallBegin && e.Ref != nil:
		return fmt.Errorf("%w: a call.begin refers to no earlier event", ErrInvalid)
	case (e.Type == TypeCallEnd || e.Type == TypeCallAborted || e.Type == TypeCallReplay) && e.Ref == nil:
		return fmt.Errorf("%w: a %s event must name its call.begin in ref", ErrInvalid, e.Type)
	}
	return nil
}
