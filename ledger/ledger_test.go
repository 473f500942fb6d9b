package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestEventEncode(t *testing.T) {
	ev := &Event{
		Seq: 7, TimeNS: 1700000000000000000, Type: TypeCallEnd, TraceID: "0190b6a2-0000-7000-8000-000000000000",
		Tenant: "acme", Caller: "uid:1000", Cell: "wc", Identity: ident("a"),
		InputSHA256: "sha256:in", OutputSHA256: "sha256:out", Verdict: "ok", Message: "a<b & c>d",
		Usage:      &Usage{WallNS: 5, CPUNS: 4, PeakMemoryBytes: 3, ExitCode: 0},
		Violations: []string{"x"},
		Wipe:       &Wipe{Clean: true, ElapsedNS: 9},
		Monitor:    json.RawMessage("{ \"score\" : 0.5 ,\n \"a\": [1, 2] }"),
		Attrs:      map[string]string{"z": "1", "a": "2", "m": "3"},
	}
	got, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":7,"timestamp_ns":1700000000000000000,"type":"call.end","trace_id":"0190b6a2-0000-7000-8000-000000000000",` +
		`"tenant":"acme","caller":"uid:1000","cell":"wc","identity":"` + string(ident("a")) + `",` +
		`"input_sha256":"sha256:in","output_sha256":"sha256:out","verdict":"ok","message":"a<b & c>d",` +
		`"usage":{"wall_ns":5,"cpu_ns":4,"peak_memory_bytes":3,"exit_code":0},"violations":["x"],` +
		`"wipe":{"clean":true,"elapsed_ns":9},"monitor":{"score":0.5,"a":[1,2]},"attrs":{"a":"2","m":"3","z":"1"}}`
	if string(got) != want {
		t.Fatalf("Encode:\ngot  %s\nwant %s", got, want)
	}
	dec, err := DecodeEvent(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := dec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Errorf("Encode(Decode(b)) != b:\ngot  %s\nwant %s", again, got)
	}
	min, _ := (&Event{Type: "x"}).Encode()
	if string(min) != `{"seq":0,"timestamp_ns":0,"type":"x"}` {
		t.Errorf("minimal event = %s", min)
	}
	for _, bad := range []string{`{"seq":1,"bogus":2}`, `{"seq":1} {}`, `[`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("DecodeEvent(%s) = nil error", bad)
		}
	}
}

func TestAppendValidation(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	big := strings.Repeat("x", MaxEventSize)
	tests := []struct {
		name string
		ev   *Event
	}{
		{"nil", nil},
		{"no type", &Event{}},
		{"bad type", &Event{Type: "Call End"}},
		{"catalogue type", &Event{Type: TypeCellRegister}},
		{"bad monitor", &Event{Type: "x", Monitor: json.RawMessage("{")}},
		{"nul tenant", &Event{Type: "x", Tenant: "a\x00b"}},
		{"too large", &Event{Type: "x", Message: big}},
		{"call.end without ref", &Event{Type: TypeCallEnd}},
		{"call.aborted without ref", &Event{Type: TypeCallAborted}},
		{"call.replay without ref", &Event{Type: TypeCallReplay}},
		{"mutation turns it into a catalogue event", &Event{Type: "x"}},
	}
	toCatalogue := func(tx *Txn) error { tx.Event().Type = TypeCellRevoke; return nil }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var muts []Mutation
			if strings.HasPrefix(tt.name, "mutation") {
				muts = append(muts, toCatalogue)
			}
			_, err := l.Append(ctx, tt.ev, muts...)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Append: got %v, want ErrInvalid", err)
			}
		})
	}
	if l.Size() != 0 {
		t.Errorf("Size = %d after refused appends, want 0", l.Size())
	}
}

// independentTree recomputes the stored hashes from the stored events with
// tlog alone, as an outside verifier would.
func independentTree(t *testing.T, leaves [][]byte) func(n int64) tlog.Hash {
	t.Helper()
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, leaf := range leaves {
		hs, err := tlog.StoredHashes(int64(i), leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	return func(n int64) tlog.Hash {
		h, err := tlog.TreeHash(n, r)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
}

func TestAppendProofs(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	vs := testVerifiers(t)
	var leaves [][]byte
	var cps []Checkpoint
	for i := range 37 {
		ev := &Event{Type: TypeCallBegin, Cell: "wc", Message: strings.Repeat("m", i)}
		seq, err := l.Append(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) || ev.Seq != seq || ev.TimeNS == 0 {
			t.Fatalf("append %d: seq %d, ev.Seq %d, TimeNS %d", i, seq, ev.Seq, ev.TimeNS)
		}
		_, raw, err := l.Event(seq)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, raw)
		if i%5 == 0 || i == 36 {
			signed, err := l.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Check with note and a hand parse, not our verifier.
			n, err := note.Open(signed, vs)
			if err != nil {
				t.Fatalf("note.Open: %v", err)
			}
			lines := strings.Split(n.Text, "\n")
			if len(lines) != 4 || lines[0] != testOrigin || lines[1] != fmt.Sprint(i+1) || lines[3] != "" {
				t.Fatalf("checkpoint text %q", n.Text)
			}
			cp, err := VerifyCheckpoint(signed, vs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l.LatestCheckpoint(), signed) {
				t.Errorf("LatestCheckpoint differs from the one just made")
			}
			cps = append(cps, cp)
		}
	}
	tree := independentTree(t, leaves)
	for _, cp := range cps {
		if want := tree(int64(cp.Size)); cp.Hash != want {
			t.Fatalf("checkpoint %d hash %x, recomputed %x", cp.Size, cp.Hash, want)
		}
		for seq := range cp.Size {
			p, err := l.ProveInclusion(seq, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(p, int64(cp.Size), cp.Hash, int64(seq), tlog.RecordHash(leaves[seq])); err != nil {
				t.Fatalf("CheckRecord(%d in %d): %v", seq, cp.Size, err)
			}
			if err := VerifyInclusion(cp, seq, leaves[seq], p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(cp, seq, append([]byte("x"), leaves[seq]...), p); !errors.Is(err, ErrBadProof) {
				t.Fatalf("VerifyInclusion of a changed leaf: got %v, want ErrBadProof", err)
			}
		}
	}
	for i, old := range cps {
		for _, new := range cps[i:] {
			p, err := l.ProveConsistency(old.Size, new.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p, int64(new.Size), new.Hash, int64(old.Size), old.Hash); err != nil {
				t.Fatalf("CheckTree(%d, %d): %v", old.Size, new.Size, err)
			}
			if err := VerifyConsistency(old, new, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := l.ProveInclusion(37, 37); !errors.Is(err, ErrInvalid) {
		t.Errorf("ProveInclusion past the end: got %v, want ErrInvalid", err)
	}
	if _, err := l.ProveConsistency(3, 38); !errors.Is(err, ErrInvalid) {
		t.Errorf("ProveConsistency past the end: got %v, want ErrInvalid", err)
	}
	// Checkpoint with nothing new returns the latest without a new one.
	again, err := l.Checkpoint(ctx)
	if err != nil || !bytes.Equal(again, l.LatestCheckpoint()) {
		t.Errorf("Checkpoint with no new events: %v", err)
	}
	if _, err := l.CheckpointAt(35); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckpointAt(35) = %v, want ErrNotFound", err)
	}
	if got, err := l.CheckpointAt(37); err != nil || !bytes.Equal(got, again) {
		t.Errorf("CheckpointAt(37): %v", err)
	}
}

func TestVerifyCheckpointRejects(t *testing.T) {
	vs := testVerifiers(t)
	sign := func(text string, s note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := Checkpoint{Origin: testOrigin, Size: 3, Hash: tlog.RecordHash([]byte("x"))}.Text()
	otherKey, _, _ := note.GenerateKey(nil, testOrigin)
	other, _ := note.NewSigner(otherKey)
	tests := []struct {
		name   string
		signed []byte
	}{
		{"unknown key", sign(good, other)},
		{"other origin", sign(strings.Replace(good, testOrigin, "evil.example/log", 1), testSigner(t))},
		{"bad size", sign(testOrigin+"\n03\n"+strings.Split(good, "\n")[2]+"\n", testSigner(t))},
		{"short hash", sign(testOrigin+"\n3\nAAAA\n", testSigner(t))},
		{"two lines", sign(testOrigin+"\n3\n", testSigner(t))},
		{"tampered", bytes.Replace(sign(good, testSigner(t)), []byte("\n3\n"), []byte("\n4\n"), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyCheckpoint(tt.signed, vs); !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("got %v, want ErrBadCheckpoint", err)
			}
		})
	}
	ext := sign(good+"extension line\n", testSigner(t))
	if cp, err := VerifyCheckpoint(ext, vs); err != nil || cp.Size != 3 {
		t.Errorf("checkpoint with an extension line: %v", err)
	}
}

// blockCommitter makes the committer wait before taking its next group
// until the returned release is called, so a test can queue a group.
type committerGate struct {
	mu      sync.Mutex
	armed   bool
	blocked chan struct{}
	release chan struct{}
}

func (g *committerGate) hook() {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.blocked)
		<-g.release
	}
}

func (g *committerGate) arm() {
	g.mu.Lock()
	g.armed, g.blocked, g.release = true, make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
}

func queueLen(l *Ledger) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

func waitQueue(t *testing.T, l *Ledger, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); queueLen(l) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("queue never reached %d", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommitMutations(t *testing.T) {
	gate := &committerGate{}
	l := openTest(t, Options{testBeforeGroup: gate.hook})
	ctx := context.Background()
	gate.arm()
	l.signal() // the committer blocks at once; everything below is one group
	<-gate.blocked

	set := func(k, v string) Mutation {
		return func(tx *Txn) error { return tx.Set([]byte(k), []byte(v)) }
	}
	expect := func(k, want string) Mutation {
		return func(tx *Txn) error {
			got, err := tx.Get([]byte(k))
			if want == "" {
				if !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("get %s = %q, %v; want not found", k, got, err)
				}
				return nil
			}
			if err != nil || string(got) != want {
				return fmt.Errorf("get %s = %q, %v; want %q", k, got, err, want)
			}
			return nil
		}
	}
	errFail := errors.New("refused by mutation")
	type out struct {
		seq uint64
		err error
	}
	cases := []struct {
		name    string
		muts    []Mutation
		wantSeq uint64
		wantErr error
	}{
		{"first", []Mutation{set("x/a", "1")}, 0, nil},
		{"sees earlier write in group", []Mutation{expect("x/a", "1"), set("x/b", "2")}, 1, nil},
		{"fails", []Mutation{set("x/c", "lost"), func(*Txn) error { return errFail }}, 0, errFail},
		{"panics", []Mutation{func(*Txn) error { panic("boom") }}, 0, nil},
		{"failed writes invisible", []Mutation{expect("x/c", ""), set("x/d", "4"), expect("x/d", "4")}, 2, nil},
		{"ledger key refused", []Mutation{set("head/x", "1")}, 0, ErrInvalid},
		{"scan merges", []Mutation{
			func(tx *Txn) error { return errors.Join(tx.Delete([]byte("x/b")), tx.Set([]byte("x/aa"), nil)) },
			func(tx *Txn) error {
				var keys []string
				err := tx.Scan([]byte("x/"), func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
				if got := strings.Join(keys, ","); got != "x/a,x/aa,x/d" {
					return fmt.Errorf("scan = %s", got)
				}
				return err
			}}, 3, nil},
	}
	results := make([]chan out, len(cases))
	for i, c := range cases {
		results[i] = make(chan out, 1)
		go func() {
			seq, err := l.Append(ctx, &Event{Type: "test.group", Message: c.name}, c.muts...)
			results[i] <- out{seq, err}
		}()
		waitQueue(t, l, i+1) // keep the queue in case order
	}
	close(gate.release)
	for i, c := range cases {
		r := <-results[i]
		switch {
		case c.name == "panics":
			if r.err == nil || !strings.Contains(r.err.Error(), "panicked: boom") {
				t.Errorf("%s: got %v, want a panic error", c.name, r.err)
			}
		case c.wantErr != nil:
			if !errors.Is(r.err, c.wantErr) {
				t.Errorf("%s: got %v, want %v", c.name, r.err, c.wantErr)
			}
		case r.err != nil || r.seq != c.wantSeq:
			t.Errorf("%s: got seq %d, %v; want seq %d", c.name, r.seq, r.err, c.wantSeq)
		}
	}
	if l.Size() != 4 {
		t.Errorf("Size = %d, want 4", l.Size())
	}
	for k, want := range map[string]string{"x/a": "1", "x/b": "", "x/c": "", "x/d": "4", "x/aa": ""} {
		got, err := l.Get([]byte(k))
		if want == "" && k != "x/aa" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%s) = %q, %v; want not found", k, got, err)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, want)
		}
	}
	// The group stored its signed checkpoint with it; none was kept.
	stored, err := getCopy(l.db, keyCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := VerifyCheckpoint(stored, testVerifiers(t)); err != nil || cp.Size != 4 {
		t.Errorf("stored checkpoint: size %d, %v; want 4", cp.Size, err)
	}
	if err := scan(l.db, pCP, func(k, _ []byte) error { return fmt.Errorf("checkpoint kept at %q", k) }); err != nil {
		t.Error(err)
	}
}

func TestAppendCancelled(t *testing.T) {
	gate := &committerGate{}
	l := openTest(t, Options{testBeforeGroup: gate.hook})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, &Event{Type: "x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx: %v", err)
	}
	gate.arm()
	l.signal()
	<-gate.blocked
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, &Event{Type: "x"})
		done <- err
	}()
	waitQueue(t, l, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append cancelled while queued: %v", err)
	}
	close(gate.release)
	if _, err := l.Append(context.Background(), &Event{Type: "y"}); err != nil {
		t.Fatal(err)
	}
	if ev, _, err := l.Event(0); err != nil || ev.Type != "y" {
		t.Fatalf("event 0 = %+v, %v; want the append after the cancelled one", ev, err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				msg := fmt.Sprintf("%d/%d", w, i)
				seq, err := l.Append(ctx, &Event{Type: "test.concurrent", Message: msg, Tenant: fmt.Sprint("t", w%2)})
				if err != nil {
					errs <- err
					return
				}
				if ev, _, err := l.Event(seq); err != nil || ev.Message != msg {
					errs <- fmt.Errorf("event %d = %+v, %v; want message %s", seq, ev, err, msg)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l.Size() != writers*each {
		t.Fatalf("Size = %d, want %d", l.Size(), writers*each)
	}
	seen := map[string]bool{}
	var n uint64
	for e, err := range l.Events(0, l.Size(), Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Event.Seq != n || seen[e.Event.Message] {
			t.Fatalf("event %d: seq %d message %s (duplicate %v)", n, e.Event.Seq, e.Event.Message, seen[e.Event.Message])
		}
		seen[e.Event.Message] = true
		n++
	}
	if n != writers*each {
		t.Errorf("Events yielded %d", n)
	}
}

func TestEventsFilter(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	trace := NewTraceID()
	evs := []Event{
		{Type: TypeDaemonStart},
		{Type: TypeCallBegin, Tenant: "a", Cell: "wc", TraceID: trace},
		{Type: TypeCallEnd, Tenant: "a", Cell: "wc", TraceID: trace, Ref: new(uint64(1))},
		{Type: TypeCallBegin, Tenant: "a/b", Cell: "grep"},
		{Type: TypeCallBegin, Tenant: "b", Cell: "wc"},
		{Type: TypeTokenIssue, Tenant: "a"},
	}
	for i := range evs {
		if _, err := l.Append(ctx, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		from, to uint64
		f        Filter
		want     []uint64
	}{
		{"all", 0, 100, Filter{}, []uint64{0, 1, 2, 3, 4, 5}},
		{"range", 2, 4, Filter{}, []uint64{2, 3}},
		{"tenant a", 0, 100, Filter{Tenant: "a"}, []uint64{1, 2, 5}},
		{"tenant a from 2", 2, 100, Filter{Tenant: "a"}, []uint64{2, 5}},
		{"tenant a/b", 0, 100, Filter{Tenant: "a/b"}, []uint64{3}},
		{"cell", 0, 100, Filter{Cell: "wc"}, []uint64{1, 2, 4}},
		{"trace", 0, 100, Filter{TraceID: trace}, []uint64{1, 2}},
		{"types", 0, 100, Filter{Types: []string{TypeCallEnd, TypeDaemonStart}}, []uint64{0, 2}},
		{"tenant and type", 0, 100, Filter{Tenant: "a", Types: []string{TypeCallBegin}}, []uint64{1}},
		{"empty", 4, 4, Filter{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			for e, err := range l.Events(tt.from, tt.to, tt.f) {
				if err != nil {
					t.Fatal(err)
				}
				if enc, _ := e.Event.Encode(); !bytes.Equal(enc, e.Raw) {
					t.Errorf("event %d: Raw is not its encoding", e.Event.Seq)
				}
				got = append(got, e.Event.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, Options{Dir: dir})
	if _, err := Open(context.Background(), testOptions(t, dir)); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open in one process: got %v, want ErrLocked", err)
	}
	l.Close()

	other := t.TempDir()
	_, vkey, _ := note.GenerateKey(nil, testOrigin)
	otherVerifier, _ := note.NewVerifier(vkey)
	tests := []struct {
		name string
		opts Options
	}{
		{"no dir", Options{Signer: testSigner(t), Verifier: testVerifier(t)}},
		{"no signer", Options{Dir: other}},
		{"no verifier", Options{Dir: other, Signer: testSigner(t)}},
		{"verifier of another key", Options{Dir: other, Signer: testSigner(t), Verifier: otherVerifier}},
		{"origin differs", Options{Dir: other, Signer: testSigner(t), Verifier: testVerifier(t), Origin: "elsewhere/log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(context.Background(), tt.opts); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
	// A state dir readable by others is tightened.
	loose := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	openTest(t, testOptions(t, loose))
	for _, d := range []string{loose, filepath.Join(loose, "db"), filepath.Join(loose, "objects", "sha256")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
}

func TestClosed(t *testing.T) {
	l := openTest(t, Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), &Event{Type: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, _, err := l.Event(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Event after Close: %v", err)
	}
	if _, err := l.List(); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openTest(t, Options{Dir: dir})
	for i := range 10 {
		if _, err := l.Append(ctx, &Event{Type: "x", Message: fmt.Sprint(i)}, func(tx *Txn) error {
			return tx.Set([]byte(fmt.Sprintf("x/%d", i)), []byte("v"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	v1, v2 := ident("r1"), ident("r2")
	for _, step := range []func() (*Event, error){
		func() (*Event, error) { return l.Register(ctx, record("wc", v1), "", Event{}) },
		func() (*Event, error) { return l.Register(ctx, record("wc", v2), v1, Event{}) },
		func() (*Event, error) { return l.Rollback(ctx, "wc", v1, Event{}) },
		func() (*Event, error) { return l.Revoke(ctx, v2, Event{}) },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	d, _, err := l.PutObject(strings.NewReader("binary"))
	if err != nil {
		t.Fatal(err)
	}
	wantLin, _ := l.Lineage("wc")
	wantList, _ := l.List()
	size := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, Options{Dir: dir})
	cp, err := VerifyCheckpoint(l.LatestCheckpoint(), testVerifiers(t))
	if err != nil || cp.Size != size || l.Size() != size {
		t.Fatalf("after reopen: checkpoint %+v (%v), Size %d; want %d", cp, err, l.Size(), size)
	}
	gotLin, err := l.Lineage("wc")
	if err != nil || fmt.Sprint(gotLin) != fmt.Sprint(wantLin) {
		t.Errorf("Lineage after reopen:\ngot  %+v (%v)\nwant %+v", gotLin, err, wantLin)
	}
	if gotList, err := l.List(); err != nil || fmt.Sprint(gotList) != fmt.Sprint(wantList) {
		t.Errorf("List after reopen:\ngot  %+v (%v)\nwant %+v", gotList, err, wantList)
	}
	if r, err := l.Revoked(v2); err != nil || !r {
		t.Error("revocation lost")
	}
	if err := l.CheckObject(d); err != nil {
		t.Error(err)
	}
	if v, err := l.Get([]byte("x/9")); err != nil || string(v) != "v" {
		t.Errorf("x/9 = %q, %v", v, err)
	}
	seq, err := l.Append(ctx, &Event{Type: "x"})
	if err != nil || seq != size {
		t.Errorf("append after reopen: seq %d, %v; want %d", seq, err, size)
	}
}
