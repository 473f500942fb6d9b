package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/trustcells/tcc/cells/manifest"
)

// CellRecord is a registered cell. Records are immutable: revocation and
// head moves live in their own keys.
type CellRecord struct {
	Identity     manifest.Identity `json:"identity"`
	Name         string            `json:"name"`
	Parent       manifest.Identity `json:"parent,omitempty"` // the head it replaced; "" for the first of a name
	Manifest     []byte            `json:"manifest"`         // canonical JSON
	Signature    []byte            `json:"signature"`        // cell.sig note
	Signers      []string          `json:"signers,omitempty"`
	Tenant       string            `json:"tenant,omitempty"` // "" = all tenants
	Seq          uint64            `json:"seq"`              // the cell.register event
	RegisteredNS int64             `json:"registered_ns"`
}

// Register records a verified cell, makes it the head of its name and
// appends its cell.register event, in one batch. parent must be the current
// head of the name ("" for a new name, or when every version is revoked);
// otherwise the error is a *LineageError. An identity registered before is
// ErrExists, and ErrRevoked when it was revoked. rec.Seq and
// rec.RegisteredNS are assigned. ev carries the request's context (trace,
// caller, tenant, message); its type, cell, identity and parent are set
// here. Tenant defaults to rec.Tenant.
//
// muts run after the catalogue checks passed, in the same batch, under the
// rules of Append's Mutations (keys under PrefixExternal only; they may add
// attrs but not change the event's type, cell, identity or parent): state
// that belongs with the registration, such as the cell's probation
// baseline, is then present exactly when the registration is.
func (l *Ledger) Register(ctx context.Context, rec CellRecord, parent manifest.Identity, ev Event, muts ...Mutation) (*Event, error) {
	if err := validIdentity(rec.Identity); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if err := validName(rec.Name); err != nil {
		return nil, fmt.Errorf("register %s: %w", rec.Identity, err)
	}
	if parent != "" {
		if err := validIdentity(parent); err != nil {
			return nil, fmt.Errorf("register %s: parent: %w", rec.Identity, err)
		}
	}
	ev.Type, ev.Cell, ev.Identity, ev.Parent = TypeCellRegister, rec.Name, rec.Identity, parent
	if ev.Tenant == "" {
		ev.Tenant = rec.Tenant
	}
	rec.Parent = parent
	id, name := rec.Identity, rec.Name
	return l.submitInternal(ctx, "register "+string(id), &ev, muts, func(tx *Txn) error {
		if seq, err := revokedAt(tx, id); err == nil {
			return fmt.Errorf("cell %q %s: %w at seq %d; a revoked identity can never be registered again", name, id, ErrRevoked, seq)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if old, err := getRecord(tx, id); err == nil {
			return fmt.Errorf("cell %s: %w (as %q at seq %d)", id, ErrExists, old.Name, old.Seq)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		head, err := headOf(tx, name)
		if err != nil {
			return err
		}
		if parent != head {
			le := &LineageError{Name: name, Head: head, Parent: parent}
			if head == "" {
				if le.Revoked, err = hasVersions(tx, name); err != nil {
					return err
				}
			}
			return le
		}
		e := tx.Event()
		rec.Seq, rec.RegisteredNS = e.Seq, e.TimeNS
		data, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		return errors.Join(
			tx.Set(cellKey(id), data),
			tx.Set(linKey(name, e.Seq), []byte(id)),
			tx.Set(headKey(name), []byte(id)))
	})
}

// Rollback moves the head of name to another registered, unrevoked
// identity of that name and appends a cell.rollback event (Identity: the
// new head, Parent: the old one). Any version may be chosen, earlier or
// later than the head: moving "forward" again after a rollback is the same
// operation. Errors: ErrNotFound, ErrOtherName, ErrRevoked, ErrIsHead.
// As for Register, the event's tenant defaults to the record's (here and in
// Revoke), so a tenant's export holds the history of its cells.
func (l *Ledger) Rollback(ctx context.Context, name string, to manifest.Identity, ev Event) (*Event, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	if err := validIdentity(to); err != nil {
		return nil, fmt.Errorf("rollback %q: %w", name, err)
	}
	ev.Type, ev.Cell, ev.Identity, ev.Parent = TypeCellRollback, name, to, ""
	return l.submitInternal(ctx, fmt.Sprintf("rollback %q to %s", name, to), &ev, nil, func(tx *Txn) error {
		rec, err := getRecord(tx, to)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no cell %s is registered", ErrNotFound, to)
		} else if err != nil {
			return err
		}
		if rec.Name != name {
			return fmt.Errorf("%w: %s is a version of %q", ErrOtherName, to, rec.Name)
		}
		if seq, err := revokedAt(tx, to); err == nil {
			return fmt.Errorf("%s is %w (seq %d)", to, ErrRevoked, seq)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		head, err := headOf(tx, name)
		if err != nil {
			return err
		}
		if head == to {
			return fmt.Errorf("%s is %w of %q", to, ErrIsHead, name)
		}
		e := tx.Event()
		e.Parent = head
		if e.Tenant == "" {
			e.Tenant = rec.Tenant
		}
		return errors.Join(
			tx.Set(headKey(name), []byte(to)),
			tx.Set(moveKey(name, e.Seq), nil))
	})
}

// Revoke forbids an identity for ever and appends a cell.revoke event. If
// it is the head, the head moves back along the lineage to the nearest
// unrevoked ancestor (its parent, else the parent's parent, ...): revoking
// a head undoes its registration. When no ancestor is left the name has no
// head (tools/list hides it) until a Rollback or a new registration with
// no parent. The event's attrs record the move as new_head (an identity or
// "none"). The head never moves to a version outside the revoked head's
// ancestry by itself: a version that was rolled back from stays out of
// service until someone chooses it. Errors: ErrNotFound for an unknown
// identity, ErrRevoked when already revoked.
func (l *Ledger) Revoke(ctx context.Context, id manifest.Identity, ev Event) (*Event, error) {
	if err := validIdentity(id); err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	ev.Type, ev.Identity, ev.Parent = TypeCellRevoke, id, ""
	return l.submitInternal(ctx, "revoke "+string(id), &ev, nil, func(tx *Txn) error {
		rec, err := getRecord(tx, id)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no cell %s is registered", ErrNotFound, id)
		} else if err != nil {
			return err
		}
		if seq, err := revokedAt(tx, id); err == nil {
			return fmt.Errorf("already %w at seq %d", ErrRevoked, seq)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		e := tx.Event()
		e.Cell = rec.Name
		if e.Tenant == "" {
			e.Tenant = rec.Tenant
		}
		if err := errors.Join(
			tx.Set(revKey(id), seqKey(nil, e.Seq)),
			tx.Set(moveKey(rec.Name, e.Seq), nil)); err != nil {
			return err
		}
		head, err := headOf(tx, rec.Name)
		if err != nil || head != id {
			return err
		}
		// Undo along the lineage: the head goes back to what it replaced,
		// skipping revoked ancestors.
		next := rec.Parent
		for next != "" {
			if _, err := revokedAt(tx, next); errors.Is(err, ErrNotFound) {
				break
			} else if err != nil {
				return err
			}
			anc, err := getRecord(tx, next)
			if err != nil {
				return fmt.Errorf("%w: ancestor %s of %s: %v", ErrCorrupt, next, id, err)
			}
			next = anc.Parent
		}
		if e.Attrs == nil {
			e.Attrs = map[string]string{}
		}
		if next == "" {
			e.Attrs[attrNewHead] = "none"
			return tx.Delete(headKey(rec.Name))
		}
		e.Attrs[attrNewHead] = string(next)
		return tx.Set(headKey(rec.Name), []byte(next))
	})
}

const attrNewHead = "new_head"

// submitInternal appends a catalogue event: cat runs with access to the
// ledger's own keys, then muts as Append's Mutations.
func (l *Ledger) submitInternal(ctx context.Context, op string, ev *Event, muts []Mutation, cat Mutation) (*Event, error) {
	if err := validateEvent(ev); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	res, err := l.submit(ctx, &request{ev: cloneEvent(ev), muts: muts, cat: cat})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return res.ev, nil
}

// Revoked reports whether id is revoked. Unknown identities are not; a
// read error is returned, never taken for "not revoked".
func (l *Ledger) Revoked(id manifest.Identity) (bool, error) {
	if !l.acquire() {
		return false, ErrClosed
	}
	defer l.release()
	_, err := revokedAt(dbGetter{l.db}, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("revoked %s: %w", id, err)
}

// Cell resolves ref to a record: a full identity, an identity prefix of at
// least 4 hex digits with or without "sha256:" (ErrAmbiguous when several
// match), or a name, which means its head. A bare string that is both a
// name and a hex prefix is the name; write "sha256:" to mean the prefix.
func (l *Ledger) Cell(ref string) (*CellRecord, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	g := dbGetter{l.db}
	if hex, ok := strings.CutPrefix(ref, hashPrefix); ok {
		return l.byPrefix(ref, strings.ToLower(hex))
	}
	if validName(ref) == nil {
		rec, err := l.head(g, ref)
		if !errors.Is(err, ErrNotFound) {
			return rec, err
		}
	}
	if hex := strings.ToLower(ref); len(hex) >= 4 && isHex(hex) {
		return l.byPrefix(ref, hex)
	}
	return nil, fmt.Errorf("cell %q: %w: no cell has this name or identity", ref, ErrNotFound)
}

const maxCandidates = 10

func (l *Ledger) byPrefix(ref, hex string) (*CellRecord, error) {
	if len(hex) < 4 || len(hex) > 64 || !isHex(hex) {
		return nil, fmt.Errorf("cell %q: %w: an identity prefix is 4 to 64 hex digits", ref, ErrInvalid)
	}
	var found []manifest.Identity
	more := false
	err := scan(l.db, cellKey(manifest.Identity(hashPrefix+hex)), func(k, _ []byte) error {
		if len(found) == maxCandidates {
			more = true
			return errStop
		}
		found = append(found, manifest.Identity(k[len(pCell):]))
		return nil
	})
	if err != nil && err != errStop {
		return nil, fmt.Errorf("cell %q: %w", ref, err)
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("cell %q: %w: no registered identity starts with %s%s", ref, ErrNotFound, hashPrefix, hex)
	case 1:
		return getRecord(dbGetter{l.db}, found[0])
	}
	return nil, &AmbiguousError{Ref: ref, Candidates: found, More: more}
}

var errStop = errors.New("stop")

// Head returns the head record of name: ErrNotFound for an unknown name,
// ErrNoHead when every version is revoked.
func (l *Ledger) Head(name string) (*CellRecord, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	return l.head(dbGetter{l.db}, name)
}

func (l *Ledger) head(g getter, name string) (*CellRecord, error) {
	head, err := headOf(g, name)
	if err != nil {
		return nil, err
	}
	if head != "" {
		return getRecord(g, head)
	}
	ok, err := hasVersions(g, name)
	switch {
	case err != nil:
		return nil, err
	case ok:
		return nil, fmt.Errorf("cell %q: %w: every version is revoked; roll back to one or register a new cell with no parent", name, ErrNoHead)
	}
	return nil, fmt.Errorf("cell %q: %w", name, ErrNotFound)
}

// CellSummary is one name in List.
type CellSummary struct {
	Name         string
	Head         manifest.Identity // "" when every version is revoked
	Tenant       string            // the head's
	RegisteredNS int64             // when the head was registered
	Versions     int
	Revoked      int // revoked versions
}

// List returns one summary per name, sorted by name.
func (l *Ledger) List() ([]CellSummary, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	snap := l.db.NewSnapshot()
	defer snap.Close()
	g := dbGetter{snap}
	var out []CellSummary
	err := scan(snap, pLin, func(k, v []byte) error {
		name := string(k[len(pLin) : len(k)-9])
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, CellSummary{Name: name})
		}
		s := &out[len(out)-1]
		s.Versions++
		if _, err := revokedAt(g, manifest.Identity(v)); err == nil {
			s.Revoked++
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cells: %w", err)
	}
	for i := range out {
		s := &out[i]
		if s.Head, err = headOf(g, s.Name); err != nil {
			return nil, fmt.Errorf("list cells: %w", err)
		}
		if s.Head != "" {
			rec, err := getRecord(g, s.Head)
			if err != nil {
				return nil, fmt.Errorf("list cells: %w", err)
			}
			s.Tenant, s.RegisteredNS = rec.Tenant, rec.RegisteredNS
		}
	}
	return out, nil
}

// LineageKind says what a LineageEntry records.
type LineageKind string

const (
	LineageRegister LineageKind = "register"
	LineageRollback LineageKind = "rollback"
	LineageRevoke   LineageKind = "revoke"
)

// LineageEntry is one step in the history of a name.
type LineageEntry struct {
	Kind     LineageKind
	Seq      uint64 // the event
	TimeNS   int64
	Identity manifest.Identity // register, revoke: the cell; rollback: the new head
	Parent   manifest.Identity // register: the head it replaced
	// From and To are the head before and after, for a rollback and for the
	// revocation of a head ("" = no head).
	From, To manifest.Identity
	Revoked  bool // register: the identity is revoked now
	Head     bool // register: the identity is the head now
}

// Lineage returns the history of name in log order: every registration
// (with its current revoked and head flags), every rollback and every
// revocation. ErrNotFound for an unknown name.
func (l *Ledger) Lineage(name string) ([]LineageEntry, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("lineage: %w", err)
	}
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	cp := l.latest.Load()
	snap := l.db.NewSnapshot()
	defer snap.Close()
	g := dbGetter{snap}
	head, err := headOf(g, name)
	if err != nil {
		return nil, fmt.Errorf("lineage %q: %w", name, err)
	}
	var regs, moves []LineageEntry
	err = scan(snap, linPrefix(name), func(_, v []byte) error {
		rec, err := getRecord(g, manifest.Identity(v))
		if err != nil || rec.Seq >= cp.size { // newer than the view (see Ledger.latest)
			return err
		}
		_, rerr := revokedAt(g, rec.Identity)
		if rerr != nil && !errors.Is(rerr, ErrNotFound) {
			return rerr
		}
		regs = append(regs, LineageEntry{Kind: LineageRegister, Seq: rec.Seq, TimeNS: rec.RegisteredNS,
			Identity: rec.Identity, Parent: rec.Parent, Revoked: rerr == nil, Head: rec.Identity == head})
		return nil
	})
	if err == nil {
		err = scan(snap, movePrefix(name), func(k, _ []byte) error {
			seq, err := u64(k[len(k)-8:])
			if err != nil || seq >= cp.size {
				return err
			}
			raw, err := getCopy(snap, eventKey(seq))
			if err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			ev, _, err := l.leaf(snap, cp, seq, raw)
			if err != nil {
				return err
			}
			m := LineageEntry{Seq: seq, TimeNS: ev.TimeNS, Identity: ev.Identity}
			switch ev.Type {
			case TypeCellRollback:
				m.Kind, m.From, m.To = LineageRollback, ev.Parent, ev.Identity
			case TypeCellRevoke:
				m.Kind = LineageRevoke
				if nh, ok := ev.Attrs[attrNewHead]; ok {
					m.From = ev.Identity
					if nh != "none" {
						m.To = manifest.Identity(nh)
					}
				}
			default:
				return fmt.Errorf("%w: event %d (%s) in the head moves of %q", ErrCorrupt, seq, ev.Type, name)
			}
			moves = append(moves, m)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("lineage %q: %w", name, err)
	}
	if len(regs) == 0 {
		return nil, fmt.Errorf("lineage %q: %w", name, ErrNotFound)
	}
	// Both lists are in seq order: merge them.
	out := make([]LineageEntry, 0, len(regs)+len(moves))
	for len(regs) > 0 || len(moves) > 0 {
		if len(moves) == 0 || len(regs) > 0 && regs[0].Seq < moves[0].Seq {
			out, regs = append(out, regs[0]), regs[1:]
		} else {
			out, moves = append(out, moves[0]), moves[1:]
		}
	}
	return out, nil
}

// getter reads committed state or a Txn.
type getter interface {
	Get(key []byte) ([]byte, error)
	Scan(prefix []byte, fn func(k, v []byte) error) error
}

type dbGetter struct{ r reader }

func (g dbGetter) Get(key []byte) ([]byte, error) { return getCopy(g.r, key) }
func (g dbGetter) Scan(prefix []byte, fn func(k, v []byte) error) error {
	return scan(g.r, prefix, fn)
}

func getRecord(g getter, id manifest.Identity) (*CellRecord, error) {
	v, err := g.Get(cellKey(id))
	if err != nil {
		return nil, err
	}
	var rec CellRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("%w: record of %s: %v", ErrCorrupt, id, err)
	}
	return &rec, nil
}

func headOf(g getter, name string) (manifest.Identity, error) {
	v, err := g.Get(headKey(name))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return manifest.Identity(v), err
}

func hasVersions(g getter, name string) (bool, error) {
	found := false
	err := g.Scan(linPrefix(name), func(_, _ []byte) error {
		found = true
		return errStop
	})
	if err != nil && err != errStop {
		return false, err
	}
	return found, nil
}

func revokedAt(g getter, id manifest.Identity) (uint64, error) {
	v, err := g.Get(revKey(id))
	if err != nil {
		return 0, err
	}
	return u64(v)
}
