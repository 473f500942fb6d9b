package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/trustcells/tcc/kernel/outcome"
)

// The audit log's control API. Events, proofs and exports travel as the
// exact bytes the ledger stores (a leaf is hashed byte for byte), so the
// client hands them back raw; package ledger/audit parses and verifies
// them.

// LedgerKey is the key that verifies the ledger's checkpoints.
type LedgerKey struct {
	Origin   string `json:"origin"`
	Verifier string `json:"verifier"` // NAME+HASH+KEY, the line of a .pub file
}

// LedgerCheckpoint is a signed checkpoint and its parsed body.
type LedgerCheckpoint struct {
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Root       string `json:"root"`       // base64, as in the note
	Checkpoint string `json:"checkpoint"` // the signed note
}

// EventQuery selects events. With From unset, the last Last matching
// events are returned (0: none, for following only); with From set, every
// match from there. Follow keeps the stream open for new events.
type EventQuery struct {
	From   *uint64
	Last   int
	Follow bool
	Tenant string // admins only; others always see their own tenant
	Cell   string
	Trace  string
	Types  []string
}

func (q EventQuery) values() url.Values {
	v := url.Values{}
	if q.From != nil {
		v.Set("from", strconv.FormatUint(*q.From, 10))
	}
	if q.From == nil {
		v.Set("n", strconv.Itoa(q.Last))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	for k, s := range map[string]string{"tenant": q.Tenant, "cell": q.Cell, "trace": q.Trace, "type": strings.Join(q.Types, ",")} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// ExportQuery selects what an export holds: seqs From ≤ seq < To (To 0:
// up to the checkpoint the daemon signs for the export), optionally one
// tenant's events only.
type ExportQuery struct {
	From, To uint64
	Tenant   string
}

// ReplayRequest replays the call whose call.begin or call.end is Seq.
type ReplayRequest struct {
	Seq uint64 `json:"seq"`
}

// Determinism of a replayed cell.
const (
	Deterministic              = "deterministic"
	NondeterministicByContract = "nondeterministic by contract"
)

// ReplayCall is one run of a call: the original or the replay.
type ReplayCall struct {
	BeginSeq     uint64 `json:"begin_seq"`
	EndSeq       uint64 `json:"end_seq"`
	Verdict      string `json:"verdict"`
	OutputSHA256 string `json:"output_sha256,omitempty"`
}

// Replay is the answer to a replay: the same identity run again on the
// same input in a fresh sandbox, compared with the original.
type Replay struct {
	Seq            uint64           `json:"seq"` // the call.replay event
	TraceID        string           `json:"trace_id"`
	Cell           string           `json:"cell"`
	Identity       string           `json:"identity"`
	InputSHA256    string           `json:"input_sha256"`
	Original       ReplayCall       `json:"original"`
	Replay         ReplayCall       `json:"replay"`
	Match          bool             `json:"match"`       // same verdict and same output hash
	Determinism    string           `json:"determinism"` // Deterministic or NondeterministicByContract
	Nondeterminism []string         `json:"nondeterminism,omitempty"`
	Message        string           `json:"message"`
	Outcome        *outcome.Outcome `json:"outcome"`
}

// LedgerKey returns the checkpoint verifier key.
func (c *Client) LedgerKey(ctx context.Context) (*LedgerKey, error) {
	var k LedgerKey
	return &k, c.getJSON(ctx, "/v1/ledger/key", &k)
}

// LedgerCheckpoint returns the latest checkpoint, which covers every
// event appended so far; with keep (admins), tccd also keeps it, so that a
// later consistency proof from its size carries it.
func (c *Client) LedgerCheckpoint(ctx context.Context, keep bool) (*LedgerCheckpoint, error) {
	var cp LedgerCheckpoint
	if keep {
		return &cp, c.postJSON(ctx, "/v1/ledger/checkpoint", struct{}{}, &cp)
	}
	return &cp, c.getJSON(ctx, "/v1/ledger/checkpoint", &cp)
}

// LedgerEvent returns the stored bytes of event seq.
func (c *Client) LedgerEvent(ctx context.Context, seq uint64) ([]byte, error) {
	return c.raw(ctx, fmt.Sprintf("/v1/ledger/events/%d", seq))
}

// LedgerProof returns the tcc-proof/v1 document of event seq, as sent.
func (c *Client) LedgerProof(ctx context.Context, seq uint64) ([]byte, error) {
	return c.raw(ctx, fmt.Sprintf("/v1/ledger/events/%d/proof", seq))
}

// LedgerConsistency returns the tcc-consistency/v1 document from the tree
// of oldSize to the latest checkpoint, as sent.
func (c *Client) LedgerConsistency(ctx context.Context, oldSize uint64) ([]byte, error) {
	return c.raw(ctx, fmt.Sprintf("/v1/ledger/consistency?old=%d", oldSize))
}

// LedgerEvents streams events, one stored event per line. Close the
// reader to stop following.
func (c *Client) LedgerEvents(ctx context.Context, q EventQuery) (io.ReadCloser, error) {
	return c.stream(ctx, "/v1/ledger/events?"+q.values().Encode())
}

// LedgerExport streams a tcc-audit/v1 export.
func (c *Client) LedgerExport(ctx context.Context, q ExportQuery) (io.ReadCloser, error) {
	v := url.Values{}
	v.Set("from", strconv.FormatUint(q.From, 10))
	if q.To > 0 {
		v.Set("to", strconv.FormatUint(q.To, 10))
	}
	if q.Tenant != "" {
		v.Set("tenant", q.Tenant)
	}
	return c.stream(ctx, "/v1/ledger/export?"+v.Encode())
}

// LedgerReplay replays a recorded call.
func (c *Client) LedgerReplay(ctx context.Context, seq uint64) (*Replay, error) {
	var r Replay
	return &r, c.postJSON(ctx, "/v1/ledger/replay", ReplayRequest{Seq: seq}, &r)
}

func (c *Client) raw(ctx context.Context, path string) ([]byte, error) {
	body, err := c.stream(ctx, path)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

// stream sends a GET and returns the body of a 2xx answer unread.
func (c *Client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.Send(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
