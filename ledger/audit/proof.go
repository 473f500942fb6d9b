package audit

import (
	"bytes"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Document formats.
const (
	FormatProof       = "tcc-proof/v1"
	FormatConsistency = "tcc-consistency/v1"
	FormatExport      = "tcc-audit/v1"
)

// InclusionProof is a self-contained proof that one event is in the log:
// the event's bytes, the RFC 6962 audit path and the signed checkpoint it
// leads to. Anyone with the log's verifier key can check it offline:
//
//	tlog.CheckRecord(proof, tree_size, checkpoint root, seq, tlog.RecordHash(event bytes))
//
// The bytes of the "event" member, exactly as they appear in the document,
// are the Merkle leaf: reformatting the document breaks the proof.
type InclusionProof struct {
	Format     string          `json:"format"` // FormatProof
	Seq        uint64          `json:"seq"`
	TreeSize   uint64          `json:"tree_size"`
	Event      json.RawMessage `json:"event"`
	Proof      Hashes          `json:"proof"`
	Checkpoint string          `json:"checkpoint"` // signed note of the tree of TreeSize
}

// Verify checks the checkpoint's signature, that the event is canonical
// and carries Seq, and the audit path. It returns the checkpoint and the
// event.
func (p *InclusionProof) Verify(verifiers note.Verifiers) (Checkpoint, *Event, error) {
	if p.Format != FormatProof {
		return Checkpoint{}, nil, fmt.Errorf("%w: format %q, want %q", ErrMalformed, p.Format, FormatProof)
	}
	cp, err := VerifyCheckpoint([]byte(p.Checkpoint), verifiers)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("checkpoint: %w", err)
	}
	if cp.Size != p.TreeSize {
		return cp, nil, fmt.Errorf("%w: tree_size %d but the checkpoint is for size %d", ErrBadProof, p.TreeSize, cp.Size)
	}
	ev, err := DecodeLeaf(p.Event)
	if err != nil {
		return cp, nil, fmt.Errorf("event: %w", err)
	}
	if ev.Seq != p.Seq {
		return cp, nil, fmt.Errorf("%w: the document is for seq %d but the event says seq %d", ErrBadProof, p.Seq, ev.Seq)
	}
	if err := VerifyInclusion(cp, p.Seq, p.Event, tlog.RecordProof(p.Proof)); err != nil {
		return cp, ev, err
	}
	return cp, ev, nil
}

// ConsistencyProof proves that the log of NewSize events extends the log of
// OldSize events: nothing in the first OldSize was changed, dropped or
// reordered. OldCheckpoint is the stored checkpoint of that size when the
// log has one; an auditor should check the proof against the checkpoint
// it saved itself.
type ConsistencyProof struct {
	Format        string `json:"format"` // FormatConsistency
	OldSize       uint64 `json:"old_size"`
	NewSize       uint64 `json:"new_size"`
	OldCheckpoint string `json:"old_checkpoint,omitempty"`
	NewCheckpoint string `json:"new_checkpoint"`
	Proof         Hashes `json:"proof"`
}

// Verify checks both checkpoints' signatures and the proof. old, when not
// nil, is the auditor's own signed checkpoint of OldSize and replaces
// OldCheckpoint.
func (p *ConsistencyProof) Verify(verifiers note.Verifiers, old []byte) (oldCP, newCP Checkpoint, err error) {
	if p.Format != FormatConsistency {
		return oldCP, newCP, fmt.Errorf("%w: format %q, want %q", ErrMalformed, p.Format, FormatConsistency)
	}
	if old == nil {
		old = []byte(p.OldCheckpoint)
	}
	if len(old) == 0 {
		return oldCP, newCP, fmt.Errorf("%w: the log has no stored checkpoint of size %d; give the one you saved", ErrBadCheckpoint, p.OldSize)
	}
	if oldCP, err = VerifyCheckpoint(old, verifiers); err != nil {
		return oldCP, newCP, fmt.Errorf("old checkpoint: %w", err)
	}
	if newCP, err = VerifyCheckpoint([]byte(p.NewCheckpoint), verifiers); err != nil {
		return oldCP, newCP, fmt.Errorf("new checkpoint: %w", err)
	}
	if oldCP.Size != p.OldSize || newCP.Size != p.NewSize {
		return oldCP, newCP, fmt.Errorf("%w: sizes %d and %d, but the checkpoints are for %d and %d", ErrBadProof, p.OldSize, p.NewSize, oldCP.Size, newCP.Size)
	}
	return oldCP, newCP, VerifyConsistency(oldCP, newCP, tlog.TreeProof(p.Proof))
}

// ParseInclusionProof and ParseConsistencyProof decode documents strictly
// (unknown members are an error).
func ParseInclusionProof(data []byte) (*InclusionProof, error) {
	var p InclusionProof
	if err := unmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return &p, nil
}

func ParseConsistencyProof(data []byte) (*ConsistencyProof, error) {
	var p ConsistencyProof
	if err := unmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return &p, nil
}

// Marshal encodes v as compact JSON without HTML escaping and without a
// trailing newline. Raw event members keep their exact bytes, so use it
// (not json.MarshalIndent) for documents that embed leaves.
func Marshal(v any) ([]byte, error) { return marshal(v) }

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func unmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrMalformed)
	}
	return nil
}
