package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
)

func TestRegisterLineage(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	v1, v2, v3, w1 := ident("v1"), ident("v2"), ident("v3"), ident("w1")
	steps := []struct {
		name    string
		op      func() (*Event, error)
		wantErr error
		wantMsg string
	}{
		{"first of a name", func() (*Event, error) { return l.Register(ctx, record("wc", v1), "", Event{Caller: "uid:0"}) }, nil, ""},
		{"again", func() (*Event, error) { return l.Register(ctx, record("wc", v1), "", Event{}) }, ErrExists, ""},
		{"same identity other name", func() (*Event, error) { return l.Register(ctx, record("other", v1), "", Event{}) }, ErrExists, ""},
		{"no parent", func() (*Event, error) { return l.Register(ctx, record("wc", v2), "", Event{}) }, ErrLineage,
			`cell "wc": parent must be the current head ` + string(v1) + `; the manifest names no parent`},
		{"wrong parent", func() (*Event, error) { return l.Register(ctx, record("wc", v2), w1, Event{}) }, ErrLineage,
			`cell "wc": parent must be the current head ` + string(v1) + `; got ` + string(w1)},
		{"new name with parent", func() (*Event, error) { return l.Register(ctx, record("grep", w1), v1, Event{}) }, ErrLineage,
			`cell "grep": is a new name, so the manifest must name no parent; got ` + string(v1)},
		{"child of head", func() (*Event, error) { return l.Register(ctx, record("wc", v2), v1, Event{}) }, nil, ""},
		{"child of old head", func() (*Event, error) { return l.Register(ctx, record("wc", v3), v1, Event{}) }, ErrLineage, ""},
		{"bad name", func() (*Event, error) { return l.Register(ctx, record("a/b", w1), "", Event{}) }, ErrInvalid, ""},
		{"bad identity", func() (*Event, error) { return l.Register(ctx, record("wc", "sha256:AB"), "", Event{}) }, ErrInvalid, ""},
		{"revoke v2", func() (*Event, error) { return l.Revoke(ctx, v2, Event{}) }, nil, ""},
		{"revoked identity again", func() (*Event, error) { return l.Register(ctx, record("wc", v2), v1, Event{}) }, ErrRevoked, ""},
		{"child of head after revoke", func() (*Event, error) { return l.Register(ctx, record("wc", v3), v1, Event{}) }, nil, ""},
		{"revoke v1", func() (*Event, error) { return l.Revoke(ctx, v1, Event{}) }, nil, ""},
		{"revoke v3", func() (*Event, error) { return l.Revoke(ctx, v3, Event{}) }, nil, ""},
		{"no head: parent refused", func() (*Event, error) { return l.Register(ctx, record("wc", w1), v3, Event{}) }, ErrLineage,
			`cell "wc": has no head (every version is revoked), so the manifest must name no parent; got ` + string(v3)},
		{"no head: fresh start", func() (*Event, error) { return l.Register(ctx, record("wc", w1), "", Event{}) }, nil, ""},
	}
	for _, s := range steps {
		ev, err := s.op()
		if s.wantErr == nil {
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if ev.Seq+1 != l.Size() {
				t.Fatalf("%s: event seq %d, log size %d", s.name, ev.Seq, l.Size())
			}
			continue
		}
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.wantErr)
		}
		var le *LineageError
		if s.wantMsg != "" && (!errors.As(err, &le) || le.Error() != s.wantMsg) {
			t.Errorf("%s: message\ngot  %v\nwant %s", s.name, err, s.wantMsg)
		}
	}
	rec, err := l.Cell(string(v1))
	if err != nil || rec.Name != "wc" || rec.Signers[0] != "tcc.test/signer" || rec.Parent != "" {
		t.Fatalf("Cell(v1) = %+v, %v", rec, err)
	}
	ev, _, err := l.Event(rec.Seq)
	if err != nil || ev.Type != TypeCellRegister || ev.Identity != v1 || ev.Cell != "wc" || ev.Caller != "uid:0" || ev.TimeNS != rec.RegisteredNS {
		t.Errorf("register event = %+v, %v", ev, err)
	}
	rec2, _ := l.Cell(string(v2))
	if rec2.Parent != v1 {
		t.Errorf("v2 parent = %s, want %s", rec2.Parent, v1)
	}
}

func TestCellRef(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	a1, a2, b1 := identHex("abcd1", "a1"), identHex("abcd2", "a2"), identHex("beef", "b1")
	dead := identHex("dead", "d")
	for _, r := range []struct {
		name string
		id   manifest.Identity
	}{{"abcd", a1}, {"other", a2}, {"b", b1}, {"dead", dead}} {
		parent := manifest.Identity("")
		if h, err := l.Head(r.name); err == nil {
			parent = h.Identity
		}
		if _, err := l.Register(ctx, record(r.name, r.id), parent, Event{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Revoke(ctx, dead, Event{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref     string
		want    manifest.Identity
		wantErr error
	}{
		{string(a1), a1, nil},
		{strings.TrimPrefix(string(a1), "sha256:"), a1, nil},
		{"sha256:abcd1", a1, nil},
		{"abcd1", a1, nil},
		{"ABCD1", a1, nil},
		{"sha256:ABCD2", a2, nil},
		{"abcd", a1, nil},                 // the name wins over the prefix
		{"sha256:abcd", "", ErrAmbiguous}, // the prefix
		{"beef", b1, nil},
		{"b", b1, nil},
		{"other", a2, nil},
		{"dead", "", ErrNoHead},
		{"sha256:dead", dead, nil},
		{"sha256:abc", "", ErrInvalid},
		{"sha256:zzzz", "", ErrInvalid},
		{"abc", "", ErrNotFound},
		{"nosuch", "", ErrNotFound},
		{"sha256:ffff", "", ErrNotFound},
		{"", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			rec, err := l.Cell(tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %v", rec, err, tt.wantErr)
				}
				return
			}
			if err != nil || rec.Identity != tt.want {
				t.Fatalf("got %+v, %v; want %s", rec, err, tt.want)
			}
		})
	}
	_, err := l.Cell("sha256:abcd")
	var ae *AmbiguousError
	if !errors.As(err, &ae) || len(ae.Candidates) != 2 || !strings.Contains(err.Error(), string(a1)) || !strings.Contains(err.Error(), string(a2)) {
		t.Errorf("ambiguous error %v does not list both candidates", err)
	}
}

func TestRollbackRevoke(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	v := []manifest.Identity{ident("0"), ident("1"), ident("2"), ident("3")}
	other := ident("other")
	mustReg := func(name string, id, parent manifest.Identity) {
		t.Helper()
		if _, err := l.Register(ctx, record(name, id), parent, Event{}); err != nil {
			t.Fatal(err)
		}
	}
	mustReg("wc", v[0], "")
	mustReg("wc", v[1], v[0])
	mustReg("wc", v[2], v[1])
	mustReg("wc", v[3], v[2])
	mustReg("grep", other, "")
	if _, err := l.Revoke(ctx, v[1], Event{}); err != nil {
		t.Fatal(err)
	}
	head := func() manifest.Identity {
		h, err := l.Head("wc")
		if errors.Is(err, ErrNoHead) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return h.Identity
	}

	steps := []struct {
		name     string
		op       func() (*Event, error)
		wantErr  error
		wantHead manifest.Identity
	}{
		{"other name", func() (*Event, error) { return l.Rollback(ctx, "wc", other, Event{}) }, ErrOtherName, v[3]},
		{"current head", func() (*Event, error) { return l.Rollback(ctx, "wc", v[3], Event{}) }, ErrIsHead, v[3]},
		{"revoked", func() (*Event, error) { return l.Rollback(ctx, "wc", v[1], Event{}) }, ErrRevoked, v[3]},
		{"unknown", func() (*Event, error) { return l.Rollback(ctx, "wc", ident("nope"), Event{}) }, ErrNotFound, v[3]},
		{"to v2", func() (*Event, error) { return l.Rollback(ctx, "wc", v[2], Event{}) }, nil, v[2]},
		{"forward to v3", func() (*Event, error) { return l.Rollback(ctx, "wc", v[3], Event{}) }, nil, v[3]},
		{"revoke non-head", func() (*Event, error) { return l.Revoke(ctx, v[0], Event{}) }, nil, v[3]},
		{"revoke twice", func() (*Event, error) { return l.Revoke(ctx, v[0], Event{}) }, ErrRevoked, v[3]},
		{"revoke unknown", func() (*Event, error) { return l.Revoke(ctx, ident("nope"), Event{}) }, ErrNotFound, v[3]},
		{"revoke head: skips revoked v1, lands on v2", func() (*Event, error) { return l.Revoke(ctx, v[3], Event{}) }, nil, v[2]},
		{"revoke last head", func() (*Event, error) { return l.Revoke(ctx, v[2], Event{}) }, nil, ""},
	}
	for _, s := range steps {
		_, err := s.op()
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.wantErr)
		}
		if got := head(); got != s.wantHead {
			t.Fatalf("%s: head %s, want %s", s.name, got, s.wantHead)
		}
	}
	if _, err := l.Cell("wc"); !errors.Is(err, ErrNoHead) {
		t.Errorf("Cell(wc) with every version revoked: %v", err)
	}

	// Rollback onto a version that is newer than a revoked head.
	l2 := openTest(t, Options{})
	a, b := ident("a"), ident("b")
	for _, step := range []func() (*Event, error){
		func() (*Event, error) { return l2.Register(ctx, record("x", a), "", Event{}) },
		func() (*Event, error) { return l2.Register(ctx, record("x", b), a, Event{}) },
		func() (*Event, error) { return l2.Rollback(ctx, "x", a, Event{}) },
		func() (*Event, error) { return l2.Revoke(ctx, a, Event{}) }, // b is later: not promoted
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l2.Head("x"); !errors.Is(err, ErrNoHead) {
		t.Fatalf("head after revoking a rolled-back-to head: %v, want ErrNoHead", err)
	}
	ev, err := l2.Rollback(ctx, "x", b, Event{})
	if err != nil || ev.Parent != "" || ev.Identity != b {
		t.Fatalf("rollback from no head: %+v, %v", ev, err)
	}
}

func TestListLineage(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	v0, v1, v2, g := ident("0"), ident("1"), ident("2"), ident("g")
	seqs := map[string]uint64{}
	for _, s := range []struct {
		label string
		op    func() (*Event, error)
	}{
		{"reg0", func() (*Event, error) { return l.Register(ctx, record("wc", v0), "", Event{}) }},
		{"reg1", func() (*Event, error) { return l.Register(ctx, record("wc", v1), v0, Event{}) }},
		{"regg", func() (*Event, error) {
			r := record("grep", g)
			r.Tenant = "acme"
			return l.Register(ctx, r, "", Event{})
		}},
		{"back", func() (*Event, error) { return l.Rollback(ctx, "wc", v0, Event{TraceID: NewTraceID()}) }},
		{"reg2", func() (*Event, error) { return l.Register(ctx, record("wc", v2), v0, Event{}) }},
		{"rev2", func() (*Event, error) { return l.Revoke(ctx, v2, Event{Message: "bad build"}) }},
		{"rev1", func() (*Event, error) { return l.Revoke(ctx, v1, Event{}) }},
	} {
		ev, err := s.op()
		if err != nil {
			t.Fatalf("%s: %v", s.label, err)
		}
		seqs[s.label] = ev.Seq
	}
	list, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", list)
	grep, _ := l.Cell("grep")
	wc, _ := l.Cell(string(v0))
	want := fmt.Sprintf("%+v", []CellSummary{
		{Name: "grep", Head: g, Tenant: "acme", RegisteredNS: grep.RegisteredNS, Versions: 1},
		{Name: "wc", Head: v0, RegisteredNS: wc.RegisteredNS, Versions: 3, Revoked: 2},
	})
	if got != want {
		t.Errorf("List:\ngot  %s\nwant %s", got, want)
	}

	lin, err := l.Lineage("wc")
	if err != nil {
		t.Fatal(err)
	}
	type short struct {
		Kind             LineageKind
		Seq              uint64
		Identity, Parent manifest.Identity
		From, To         manifest.Identity
		Revoked, Head    bool
	}
	var gotL []short
	for _, e := range lin {
		if e.TimeNS == 0 {
			t.Errorf("lineage entry %d has no time", e.Seq)
		}
		gotL = append(gotL, short{e.Kind, e.Seq, e.Identity, e.Parent, e.From, e.To, e.Revoked, e.Head})
	}
	wantL := []short{
		{LineageRegister, seqs["reg0"], v0, "", "", "", false, true},
		{LineageRegister, seqs["reg1"], v1, v0, "", "", true, false},
		{LineageRollback, seqs["back"], v0, "", v1, v0, false, false},
		{LineageRegister, seqs["reg2"], v2, v0, "", "", true, false},
		{LineageRevoke, seqs["rev2"], v2, "", v2, v0, false, false},
		{LineageRevoke, seqs["rev1"], v1, "", "", "", false, false},
	}
	if fmt.Sprint(gotL) != fmt.Sprint(wantL) {
		t.Errorf("Lineage:\ngot  %+v\nwant %+v", gotL, wantL)
	}
	if _, err := l.Lineage("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lineage(nosuch): %v", err)
	}
	// Cell events are in the tenant index of the record's tenant.
	var n int
	for e, err := range l.Events(0, l.Size(), Filter{Tenant: "acme"}) {
		if err != nil || e.Event.Cell != "grep" {
			t.Fatalf("tenant acme: %+v, %v", e.Event, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("tenant acme has %d events, want 1", n)
	}
}

func TestCatalogueAppendRefused(t *testing.T) {
	l := openTest(t, Options{})
	for _, typ := range []string{TypeCellRegister, TypeCellRollback, TypeCellRevoke} {
		if _, err := l.Append(context.Background(), &Event{Type: typ}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Append(%s): %v, want ErrInvalid", typ, err)
		}
	}
}

// TestCatalogueGroup queues catalogue changes that race for one name so
// that the committer takes them as one group: each is checked against the
// changes before it in the batch, and a Register's Mutations are written
// exactly when the registration is.
func TestCatalogueGroup(t *testing.T) {
	gate := &committerGate{}
	l := openTest(t, Options{testBeforeGroup: gate.hook})
	ctx := context.Background()
	v1, v2, v3, v4, v5 := ident("g1"), ident("g2"), ident("g3"), ident("g4"), ident("g5")
	if _, err := l.Register(ctx, record("wc", v1), "", Event{}); err != nil {
		t.Fatal(err)
	}
	keep := func(id manifest.Identity) Mutation {
		return func(tx *Txn) error { return tx.Set([]byte("x/b/"+string(id)), []byte("baseline")) }
	}
	steps := []struct {
		name    string
		op      func() (*Event, error)
		wantErr error
	}{
		{"register v2 on v1", func() (*Event, error) { return l.Register(ctx, record("wc", v2), v1, Event{}, keep(v2)) }, nil},
		{"register v3 on v1, now stale", func() (*Event, error) { return l.Register(ctx, record("wc", v3), v1, Event{}, keep(v3)) }, ErrLineage},
		{"register v2 again", func() (*Event, error) { return l.Register(ctx, record("wc", v2), v1, Event{}) }, ErrExists},
		{"roll back to v1", func() (*Event, error) { return l.Rollback(ctx, "wc", v1, Event{}) }, nil},
		{"revoke v1, the head", func() (*Event, error) { return l.Revoke(ctx, v1, Event{}) }, nil},
		{"roll back to revoked v1", func() (*Event, error) { return l.Rollback(ctx, "wc", v1, Event{}) }, ErrRevoked},
		{"register v4 with no head", func() (*Event, error) { return l.Register(ctx, record("wc", v4), "", Event{}) }, nil},
		{"roll forward to v2", func() (*Event, error) { return l.Rollback(ctx, "wc", v2, Event{}) }, nil},
		{"mutation writes a ledger key", func() (*Event, error) {
			return l.Register(ctx, record("wc", v5), v2, Event{}, func(tx *Txn) error { return tx.Set([]byte("head/wc"), []byte(v5)) })
		}, ErrInvalid},
		{"mutation changes the identity", func() (*Event, error) {
			return l.Register(ctx, record("wc", v5), v2, Event{}, func(tx *Txn) error { tx.Event().Identity = v1; return nil })
		}, ErrInvalid},
		{"mutation changes the type", func() (*Event, error) {
			return l.Register(ctx, record("wc", v5), v2, Event{}, func(tx *Txn) error { tx.Event().Type = "call.begin"; return nil })
		}, ErrInvalid},
	}
	gate.arm()
	l.signal()
	<-gate.blocked
	errs := make([]chan error, len(steps))
	for i, s := range steps {
		errs[i] = make(chan error, 1)
		go func() { _, err := s.op(); errs[i] <- err }()
		waitQueue(t, l, i+1)
	}
	close(gate.release)
	for i, s := range steps {
		if err := <-errs[i]; s.wantErr == nil && err != nil || s.wantErr != nil && !errors.Is(err, s.wantErr) {
			t.Errorf("%s: got %v, want %v", s.name, err, s.wantErr)
		}
	}
	if head, err := l.Head("wc"); err != nil || head.Identity != v2 {
		t.Errorf("head = %+v, %v; want v2", head, err)
	}
	if _, err := l.Cell(string(v5)); !errors.Is(err, ErrNotFound) {
		t.Errorf("v5, refused: %v, want not registered", err)
	}
	if v, err := l.Get([]byte("x/b/" + string(v2))); err != nil || string(v) != "baseline" {
		t.Errorf("v2's mutation: %q, %v", v, err)
	}
	if _, err := l.Get([]byte("x/b/" + string(v3))); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused v3's mutation was written: %v", err)
	}
	lin, err := l.Lineage("wc")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range lin {
		kinds = append(kinds, string(e.Kind))
	}
	if got, want := strings.Join(kinds, " "), "register register rollback revoke register rollback"; got != want {
		t.Errorf("lineage %s, want %s", got, want)
	}
	if lin[3].To != "" || lin[5].From != v4 || lin[5].To != v2 {
		t.Errorf("head moves: revoke to %q, roll forward %q → %q", lin[3].To, lin[5].From, lin[5].To)
	}
}
