package audit

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/trustcells/tcc/cells/manifest"
)

// Event types. The catalogue types (cell.*) are written only by the
// ledger's Register, Rollback and Revoke.
const (
	TypeCellRegister = "cell.register"
	TypeCellRollback = "cell.rollback"
	TypeCellRevoke   = "cell.revoke"
	TypeCallBegin    = "call.begin"
	TypeCallEnd      = "call.end"
	TypeCallAborted  = "call.aborted"
	TypeCallReplay   = "call.replay"
	TypeTokenIssue   = "token.issue"
	TypeTokenRevoke  = "token.revoke"
	TypeVaultPut     = "vault.put"
	TypeVaultRead    = "vault.read"
	TypeDaemonStart  = "daemon.start"
	TypeDaemonStop   = "daemon.stop"
)

// MaxEventSize bounds one encoded event.
const MaxEventSize = 1 << 20

// Event is one entry of the audit log. Its encoding (Encode) is the Merkle
// leaf, so every field here is part of the verifiable format: add fields
// only at the end and only with omitempty.
type Event struct {
	Seq          uint64            `json:"seq"` // 0-based index in the log = Merkle leaf index
	TimeNS       int64             `json:"timestamp_ns"`
	Type         string            `json:"type"`
	TraceID      string            `json:"trace_id,omitempty"` // UUIDv7 shared by one request's events
	Tenant       string            `json:"tenant,omitempty"`
	Caller       string            `json:"caller,omitempty"` // "uid:1000" or "jti:…"
	Cell         string            `json:"cell,omitempty"`   // cell name
	Identity     manifest.Identity `json:"identity,omitempty"`
	Parent       manifest.Identity `json:"parent,omitempty"` // register: the parent; rollback: the head it moved from
	InputSHA256  string            `json:"input_sha256,omitempty"`
	OutputSHA256 string            `json:"output_sha256,omitempty"`
	Verdict      string            `json:"verdict,omitempty"`
	Message      string            `json:"message,omitempty"`
	Usage        *Usage            `json:"usage,omitempty"`
	Violations   []string          `json:"violations,omitempty"`
	Wipe         *Wipe             `json:"wipe,omitempty"`
	Monitor      json.RawMessage   `json:"monitor,omitempty"` // produced deterministically by the monitor
	Attrs        map[string]string `json:"attrs,omitempty"`
	// Ref is the seq of an earlier event this one answers: for call.end
	// and call.aborted the call.begin they close, for call.replay the
	// call.begin of the call replayed; other types may use it likewise.
	Ref *uint64 `json:"ref,omitempty"`
}

// Usage is what one call consumed.
type Usage struct {
	WallNS          int64  `json:"wall_ns"`
	CPUNS           int64  `json:"cpu_ns"`
	PeakMemoryBytes int64  `json:"peak_memory_bytes"`
	ExitCode        int    `json:"exit_code"`
	Signal          string `json:"signal,omitempty"` // e.g. "SIGKILL" when a signal ended the cell
}

// Wipe is the result of tearing a sandbox down and checking the absence.
type Wipe struct {
	Clean     bool     `json:"clean"`
	Leftovers []string `json:"leftovers,omitempty"`
	ElapsedNS int64    `json:"elapsed_ns"`
}

// Encode returns the event's canonical bytes, which are its Merkle leaf:
// encoding/json output of the struct (keys in declared order, omitempty
// fields left out, map keys sorted, Monitor compacted), with HTML escaping
// off and no trailing newline. DecodeEvent followed by Encode reproduces
// the bytes of every event the ledger stored.
func (e *Event) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeEvent parses stored event bytes. Unknown fields are an error.
func DecodeEvent(data []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode event: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode event: %w: trailing data", ErrMalformed)
	}
	return &e, nil
}

// DecodeLeaf parses a leaf and checks that it is in canonical form
// (Encode reproduces it byte for byte). A verifier must use it rather than
// DecodeEvent: JSON with duplicate keys or odd spacing could show a reader
// something other than what this package decodes.
func DecodeLeaf(leaf []byte) (*Event, error) {
	e, err := DecodeEvent(leaf)
	if err != nil {
		return nil, err
	}
	enc, err := e.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(enc, leaf) {
		return nil, fmt.Errorf("%w: event bytes are not in canonical form (reformatted, or a key repeated)", ErrMalformed)
	}
	return e, nil
}

// NewTraceID returns a fresh UUIDv7 for Event.TraceID.
func NewTraceID() string { return uuid.Must(uuid.NewV7()).String() }
