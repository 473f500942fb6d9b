package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var (
	// ErrBadCheckpoint: a checkpoint that does not parse or verify.
	ErrBadCheckpoint = errors.New("bad checkpoint")
	// ErrBadProof: an inclusion or consistency proof that does not verify.
	ErrBadProof = errors.New("proof does not verify")
	// ErrMalformed: a document, line or event that does not parse.
	ErrMalformed = errors.New("malformed")
	// ErrVerification: a document failed verification; the error is a
	// *VerifyError listing every problem found.
	ErrVerification = errors.New("verification failed")
)

// Checkpoint is the body of a C2SP tlog-checkpoint: origin, tree size and
// root hash, one per line.
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   tlog.Hash
}

// Text is the checkpoint body as signed (no extension lines).
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// ParseCheckpoint parses a checkpoint body. Extension lines after the hash
// are allowed by C2SP and ignored.
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, fmt.Errorf("%w: body does not end in a newline", ErrBadCheckpoint)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("%w: want origin, size and hash lines, got %d lines", ErrBadCheckpoint, len(lines))
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return c, fmt.Errorf("%w: empty extension line", ErrBadCheckpoint)
		}
	}
	c.Origin = lines[0]
	if c.Origin == "" {
		return c, fmt.Errorf("%w: empty origin", ErrBadCheckpoint)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return c, fmt.Errorf("%w: tree size %q is not a decimal number", ErrBadCheckpoint, lines[1])
	}
	c.Size = size
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return c, fmt.Errorf("%w: root hash %q is not 32 bytes of base64", ErrBadCheckpoint, lines[2])
	}
	copy(c.Hash[:], h)
	return c, nil
}

// VerifyCheckpoint opens a signed checkpoint with the known verifier keys
// (e.g. note.VerifierList(note.NewVerifier(vkey))) and returns its body.
// The signature that verifies must be by a key named like the origin.
func VerifyCheckpoint(signed []byte, verifiers note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(signed, verifiers)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	for _, s := range n.Sigs {
		if s.Name == c.Origin {
			return c, nil
		}
	}
	return Checkpoint{}, fmt.Errorf("%w: no verified signature by a key named %q (the origin)", ErrBadCheckpoint, c.Origin)
}

// VerifyInclusion checks that leaf (the stored event bytes) is entry seq
// of the tree the checkpoint describes.
func VerifyInclusion(cp Checkpoint, seq uint64, leaf []byte, proof tlog.RecordProof) error {
	if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Hash, int64(seq), tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("event %d in %s tree of size %d: %w: %v", seq, cp.Origin, cp.Size, ErrBadProof, err)
	}
	return nil
}

// VerifyConsistency checks that the tree of old is a prefix of the tree of
// new: the log was only appended to between the two checkpoints.
func VerifyConsistency(old, new Checkpoint, proof tlog.TreeProof) error {
	if old.Origin != new.Origin {
		return fmt.Errorf("%w: checkpoints of different logs (%q, %q)", ErrBadProof, old.Origin, new.Origin)
	}
	if err := tlog.CheckTree(proof, int64(new.Size), new.Hash, int64(old.Size), old.Hash); err != nil {
		return fmt.Errorf("%s tree of size %d against size %d: %w: %v", new.Origin, old.Size, new.Size, ErrBadProof, err)
	}
	return nil
}

// UnverifiedCheckpoint parses the body of a signed checkpoint without
// checking any signature: for a note whose origin is already trusted (the
// ledger's own, in memory) or to go on locating problems after a bad
// signature. Anything an auditor relies on goes through VerifyCheckpoint.
func UnverifiedCheckpoint(signed []byte) (Checkpoint, error) {
	// As note.Open: the signatures follow the last blank line.
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return Checkpoint{}, fmt.Errorf("%w: not a signed note", ErrBadCheckpoint)
	}
	return ParseCheckpoint(string(signed[:i+1]))
}

// Hashes is a list of tree hashes; JSON carries them as standard base64
// strings, like the root hash of a checkpoint.
type Hashes []tlog.Hash

func (h Hashes) MarshalJSON() ([]byte, error) {
	s := make([]string, len(h))
	for i, x := range h {
		s[i] = base64.StdEncoding.EncodeToString(x[:])
	}
	return marshal(s)
}

func (h *Hashes) UnmarshalJSON(b []byte) error {
	var s []string
	if err := unmarshalStrict(b, &s); err != nil {
		return err
	}
	out := make(Hashes, len(s))
	for i, x := range s {
		d, err := base64.StdEncoding.Strict().DecodeString(x)
		if err != nil || len(d) != tlog.HashSize {
			return fmt.Errorf("%w: proof hash %d (%q) is not 32 bytes of base64", ErrMalformed, i, x)
		}
		copy(out[i][:], d)
	}
	*h = out
	return nil
}
