package ledger

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/ledger/audit"
)

var (
	// ErrClosed is returned by every call on a closed Ledger.
	ErrClosed = errors.New("ledger is closed")
	// ErrLocked means another process (or another Open in this one) holds the
	// state directory.
	ErrLocked = errors.New("state directory is in use")
	// ErrBroken means a commit failed; the ledger refuses further writes
	// until the daemon restarts and pebble recovers from its WAL.
	ErrBroken = errors.New("ledger is broken after a failed commit")
	// ErrCorrupt means stored state contradicts itself or its signed
	// checkpoint (an event or tree hash the checkpoint does not vouch for,
	// a missing event below the size, a log longer than its checkpoint).
	ErrCorrupt = errors.New("ledger state is corrupt")
	// ErrKeyMismatch means the stored checkpoints do not verify with the
	// checkpoint key the ledger was opened with.
	ErrKeyMismatch = errors.New("checkpoint key does not verify the stored checkpoints")
	// ErrInvalid marks a malformed argument: an event, a name, an identity.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: no such event, cell, name, checkpoint or key.
	ErrNotFound = errors.New("not found")
	// ErrExists: the identity is already registered.
	ErrExists = errors.New("already registered")
	// ErrAmbiguous: an identity prefix matches more than one cell.
	ErrAmbiguous = errors.New("ambiguous identity prefix")
	// ErrLineage: a registration does not name the current head as parent.
	ErrLineage = errors.New("lineage violation")
	// ErrRevoked: the identity is revoked (for ever).
	ErrRevoked = errors.New("revoked")
	// ErrNoHead: every identity of the name is revoked.
	ErrNoHead = errors.New("name has no head")
	// ErrIsHead: a rollback to the identity that already is the head.
	ErrIsHead = errors.New("already the head")
	// ErrOtherName: a rollback to an identity registered under another name.
	ErrOtherName = errors.New("identity belongs to another name")
	// ErrObjectCorrupt: a stored object no longer hashes to its name.
	ErrObjectCorrupt = errors.New("object content does not match its digest")
	// ErrBadCheckpoint: a checkpoint that does not parse or verify.
	ErrBadCheckpoint = audit.ErrBadCheckpoint
	// ErrBadProof: an inclusion or consistency proof that does not verify.
	ErrBadProof = audit.ErrBadProof
)

// LineageError is a registration whose parent is not the current head of
// its name.
type LineageError struct {
	Name   string
	Head   manifest.Identity // "" when the name has no head
	Parent manifest.Identity // what the manifest named; "" for none
	// Revoked is true when the name has versions but all are revoked.
	Revoked bool
}

func (e *LineageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cell %q: ", e.Name)
	switch {
	case e.Head != "":
		fmt.Fprintf(&b, "parent must be the current head %s; ", e.Head)
		if e.Parent == "" {
			b.WriteString("the manifest names no parent")
		} else {
			fmt.Fprintf(&b, "got %s", e.Parent)
		}
	case e.Revoked:
		fmt.Fprintf(&b, "has no head (every version is revoked), so the manifest must name no parent; got %s", e.Parent)
	default:
		fmt.Fprintf(&b, "is a new name, so the manifest must name no parent; got %s", e.Parent)
	}
	return b.String()
}

func (e *LineageError) Unwrap() error { return ErrLineage }

// AmbiguousError is an identity prefix that matches several cells.
type AmbiguousError struct {
	Ref        string
	Candidates []manifest.Identity // at most maxCandidates, sorted
	More       bool                // more candidates exist than listed
}

func (e *AmbiguousError) Error() string {
	ids := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		ids[i] = string(c)
	}
	more := ""
	if e.More {
		more = ", …"
	}
	return fmt.Sprintf("cell %q is ambiguous: matches %s%s; give more hex digits", e.Ref, strings.Join(ids, ", "), more)
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// ObjectError is a problem with one object of the content-addressed store.
type ObjectError struct {
	Digest manifest.Digest
	Path   string
	Got    manifest.Digest // set when the content hashes to something else
	Err    error           // ErrObjectCorrupt, ErrNotFound or an I/O error
}

func (e *ObjectError) Error() string {
	if e.Got != "" {
		return fmt.Sprintf("object %s: content at %s hashes to %s; the store is damaged: register the capsule again to restore it", e.Digest, e.Path, e.Got)
	}
	if errors.Is(e.Err, ErrNotFound) {
		return fmt.Sprintf("object %s: missing from the store (%s); register the capsule again to restore it", e.Digest, e.Path)
	}
	return fmt.Sprintf("object %s (%s): %v", e.Digest, e.Path, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }
