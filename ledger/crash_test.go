package ledger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/ledger/audit"
)

// The crash and lock tests re-execute the test binary as a child that
// works on a state directory until the parent kills it.
const (
	childEnv    = "TCC_LEDGER_TEST_CHILD" // mode: "crash" or "hold"
	childDirEnv = "TCC_LEDGER_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode, os.Getenv(childDirEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(mode, dir string) error {
	skey, vkey := testKey()
	s, err := note.NewSigner(skey)
	if err != nil {
		return err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return err
	}
	l, err := Open(context.Background(), Options{Dir: dir, Signer: s, Verifier: v})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	if mode == "hold" {
		select {}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				trace := NewTraceID()
				ev := &Event{Type: "test.call", TraceID: trace, Tenant: fmt.Sprint("tenant-", w), Message: strings.Repeat("x", i%300)}
				_, err := l.Append(ctx, ev, func(tx *Txn) error {
					return tx.Set(fmt.Appendf(nil, "x/n/%020d", tx.Event().Seq), []byte(trace))
				})
				if err != nil {
					errc <- err
					return
				}
				if i%50 == 0 {
					if _, err := l.Checkpoint(ctx); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		// Calls: a begin, then usually its end; some stay open.
		for i := 0; ; i++ {
			seq, err := l.Append(ctx, &Event{Type: TypeCallBegin, TraceID: NewTraceID(), Tenant: "tenant-call"})
			if err == nil && i%5 != 0 {
				typ := TypeCallEnd
				if i%7 == 0 {
					typ = TypeCallAborted
				}
				_, err = l.Append(ctx, &Event{Type: typ, Ref: &seq, Tenant: "tenant-call"})
			}
			if err != nil {
				errc <- err
				return
			}
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			if err := catalogueStep(ctx, l); err != nil {
				errc <- err
				return
			}
			if i%10 == 0 {
				if _, _, err := l.PutObject(strings.NewReader(fmt.Sprint(rand.Int64()))); err != nil {
					errc <- err
					return
				}
			}
		}
	})
	return <-errc
}

// catalogueStep registers, rolls back or revokes at random.
func catalogueStep(ctx context.Context, l *Ledger) error {
	name := fmt.Sprint("crash-", rand.IntN(4))
	var head manifest.Identity
	if h, err := l.Head(name); err == nil {
		head = h.Identity
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoHead) {
		return err
	}
	lin, _ := l.Lineage(name)
	var live []manifest.Identity
	for _, e := range lin {
		if e.Kind == LineageRegister && !e.Revoked && !e.Head {
			live = append(live, e.Identity)
		}
	}
	switch r := rand.IntN(10); {
	case r == 0 && len(live) > 0:
		_, err := l.Rollback(ctx, name, live[rand.IntN(len(live))], Event{Caller: "uid:0"})
		return err
	case r == 1 && head != "":
		_, err := l.Revoke(ctx, head, Event{Caller: "uid:0"})
		return err
	case r == 2 && len(live) > 0:
		_, err := l.Revoke(ctx, live[rand.IntN(len(live))], Event{Caller: "uid:0"})
		return err
	}
	rec := record(name, ident(fmt.Sprint(rand.Int64())))
	rec.Tenant = "tenant-cat"
	_, err := l.Register(ctx, rec, head, Event{Caller: "uid:0"})
	return err
}

func startChild(t *testing.T, mode, dir string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not start: %q, %v; stderr:\n%s", line, err, stderr.String())
	}
	go io.Copy(io.Discard, out)
	return cmd, &stderr
}

func TestLockHeldByOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd, _ := startChild(t, "hold", dir)
	_, err := Open(context.Background(), testOptions(t, dir))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "another tccd") {
		t.Fatalf("Open while another process holds the directory: %v", err)
	}
	t.Log(err)
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Open(context.Background(), testOptions(t, dir))
	if err != nil {
		t.Fatalf("Open after the holder died: %v", err)
	}
	l.Close()
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes repeatedly")
	}
	dir := t.TempDir()
	var last uint64
	for round := range 8 {
		cmd, stderr := startChild(t, "crash", dir)
		alive := time.Duration(20+rand.IntN(250)) * time.Millisecond
		time.Sleep(alive)
		cmd.Process.Kill()
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("round %d: child ended by itself (%v) before the kill; stderr:\n%s", round, err, stderr)
		}
		l, err := Open(context.Background(), testOptions(t, dir))
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		size := l.Size()
		if size < last {
			t.Fatalf("round %d: size went down from %d to %d", round, last, size)
		}
		checkConsistent(t, l)
		if round == 7 {
			var buf bytes.Buffer
			if _, err := l.Export(context.Background(), &buf, ExportOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.VerifyExport(&buf, "crash.jsonl", testVerifiers(t)); err != nil {
				t.Fatalf("export after the crashes: %v", err)
			}
		}
		t.Logf("round %d: killed after %v: %d events (+%d)", round, alive, size, size-last)
		last = size
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if last == 0 {
		t.Fatal("the child never committed anything")
	}
}

// checkConsistent checks a reopened ledger from its raw keys, rebuilding
// the tree with tlog alone and the catalogue by replaying the log.
func checkConsistent(t *testing.T, l *Ledger) {
	t.Helper()
	size := l.Size()
	keys := func(prefix []byte) map[string]string {
		m := map[string]string{}
		if err := scan(l.db, prefix, func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}

	// Events: exactly 0..size-1, each canonical.
	var leaves [][]byte
	var events []*Event
	if err := scan(l.db, pEvent, func(k, v []byte) error {
		seq, _ := u64(k[len(pEvent):])
		if seq != uint64(len(leaves)) {
			return fmt.Errorf("event key %d where %d was expected", seq, len(leaves))
		}
		ev, err := DecodeEvent(v)
		if err != nil {
			return err
		}
		if enc, _ := ev.Encode(); ev.Seq != seq || !bytes.Equal(enc, v) {
			return fmt.Errorf("event %d: seq %d, canonical %v", seq, ev.Seq, bytes.Equal(enc, v))
		}
		leaves = append(leaves, bytes.Clone(v))
		events = append(events, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if uint64(len(leaves)) != size {
		t.Fatalf("%d events stored, size says %d", len(leaves), size)
	}

	// Tree: stored hashes are exactly tlog's, checkpoints match.
	tree := independentTree(t, leaves)
	hs := keys(pHash)
	if int64(len(hs)) != tlog.StoredHashCount(int64(size)) {
		t.Fatalf("%d stored hashes, want %d", len(hs), tlog.StoredHashCount(int64(size)))
	}
	var mem []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = mem[x]
		}
		return out, nil
	})
	for i, leaf := range leaves {
		h, _ := tlog.StoredHashes(int64(i), leaf, r)
		mem = append(mem, h...)
	}
	for i, h := range mem {
		if hs[string(hashKey(int64(i)))] != string(h[:]) {
			t.Fatalf("stored hash %d differs from the recomputed one", i)
		}
	}
	// Checkpoints: the stored one covers the whole log, every kept one
	// an earlier tree; all verify and match the recomputed tree.
	cps := keys(pCP)
	head, err := getCopy(l.db, keyCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	cps[string(cpKey(size))+" (stored)"] = string(head)
	vs := testVerifiers(t)
	for k, signed := range cps {
		n, _ := u64([]byte(k[len(pCP) : len(pCP)+8]))
		cp, err := VerifyCheckpoint([]byte(signed), vs)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", n, err)
		}
		if cp.Size != n || n > size || cp.Hash != tree(int64(n)) {
			t.Fatalf("checkpoint %d: size %d, hash matches %v (log size %d)", n, cp.Size, cp.Hash == tree(int64(n)), size)
		}
	}

	// Catalogue: replay the log and compare with every catalogue key.
	want := map[string]map[string]string{"cell/": {}, "head/": {}, "rev/": {}, "l/": {}, "r/": {}, "x/": {}, "t/": {}, "o/": {}, "end/": {}}
	heads := map[string]manifest.Identity{}
	parents := map[manifest.Identity]manifest.Identity{}
	for _, ev := range events {
		if ev.Tenant != "" {
			want["t/"][string(tenantKey(ev.Tenant, ev.Seq))] = ""
		}
		switch ev.Type {
		case TypeCallBegin:
			want["o/"][string(openKey(ev.Seq))] = ""
		case TypeCallEnd, TypeCallAborted:
			if _, ok := want["o/"][string(openKey(*ev.Ref))]; !ok {
				t.Fatalf("event %d closes call %d, which is not open", ev.Seq, *ev.Ref)
			}
			delete(want["o/"], string(openKey(*ev.Ref)))
			want["end/"][string(endKey(*ev.Ref))] = string(seqKey(nil, ev.Seq))
		case "test.call":
			want["x/"][fmt.Sprintf("x/n/%020d", ev.Seq)] = ev.TraceID
		case TypeCellRegister:
			if heads[ev.Cell] != ev.Parent {
				t.Fatalf("event %d registers %s with parent %q, head was %q", ev.Seq, ev.Identity, ev.Parent, heads[ev.Cell])
			}
			want["cell/"][string(cellKey(ev.Identity))] = ev.Cell
			want["l/"][string(linKey(ev.Cell, ev.Seq))] = string(ev.Identity)
			heads[ev.Cell] = ev.Identity
			parents[ev.Identity] = ev.Parent
		case TypeCellRollback:
			if heads[ev.Cell] != ev.Parent {
				t.Fatalf("event %d rolls back from %q, head was %q", ev.Seq, ev.Parent, heads[ev.Cell])
			}
			heads[ev.Cell] = ev.Identity
			want["r/"][string(moveKey(ev.Cell, ev.Seq))] = ""
		case TypeCellRevoke:
			want["rev/"][string(revKey(ev.Identity))] = string(seqKey(nil, ev.Seq))
			want["r/"][string(moveKey(ev.Cell, ev.Seq))] = ""
			if nh, ok := ev.Attrs[attrNewHead]; ok {
				if heads[ev.Cell] != ev.Identity {
					t.Fatalf("event %d moves the head of %s, which was not the revoked one", ev.Seq, ev.Cell)
				}
				if nh == "none" {
					delete(heads, ev.Cell)
				} else {
					heads[ev.Cell] = manifest.Identity(nh)
				}
			} else if heads[ev.Cell] == ev.Identity {
				t.Fatalf("event %d revokes the head of %s without moving it", ev.Seq, ev.Cell)
			}
		}
	}
	for name, id := range heads {
		want["head/"][string(headKey(name))] = string(id)
	}
	for prefix, w := range want {
		got := keys([]byte(prefix))
		if prefix == "cell/" {
			for k := range got {
				rec, err := getRecord(dbGetter{l.db}, manifest.Identity(k[len(prefix):]))
				if err != nil || events[rec.Seq].Identity != rec.Identity || parents[rec.Identity] != rec.Parent {
					t.Fatalf("record %s does not match its event: %+v, %v", k, rec, err)
				}
				got[k] = rec.Name
			}
		}
		if len(got) != len(w) {
			t.Fatalf("%s: %d keys stored, the log implies %d", prefix, len(got), len(w))
		}
		for k, v := range w {
			if gv, ok := got[k]; !ok || gv != v {
				t.Fatalf("%s: key %q = %q (present %v), the log implies %q", prefix, k, gv, ok, v)
			}
		}
	}

	// Objects: all intact, no temporary files.
	root := filepath.Join(l.Dir(), "objects", "sha256")
	fans, _ := os.ReadDir(root)
	for _, fan := range fans {
		ents, _ := os.ReadDir(filepath.Join(root, fan.Name()))
		for _, e := range ents {
			if err := l.CheckObject(manifest.Digest("sha256:" + fan.Name() + e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(l.Dir(), "objects", "tmp")); len(ents) != 0 {
		t.Fatalf("temporary objects left after Open: %v", ents)
	}
}

// TestPowerLoss checks durability, which a process kill cannot (the page
// cache survives it): the database lives on pebble's crashable in-memory
// file system, and after a simulated power loss — only what was synced,
// plus a random part of the rest — every append that had returned is
// there, with its Mutation's write, and the store opens and checks out.
func TestPowerLoss(t *testing.T) {
	ctx := context.Background()
	for round, unsynced := range []int{0, 30, 0, 70} {
		fs := vfs.NewCrashableMem()
		dir := t.TempDir()
		opts := testOptions(t, dir)
		opts.testFS = fs
		l, err := Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			acked = map[uint64]string{} // seq → trace of every append that returned
			stop  = make(chan struct{})
			wg    sync.WaitGroup
		)
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					trace := NewTraceID()
					seq, err := l.Append(ctx, &Event{Type: "test.call", TraceID: trace}, func(tx *Txn) error {
						return tx.Set(fmt.Appendf(nil, "x/n/%020d", tx.Event().Seq), []byte(trace))
					})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[seq] = trace
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		mu.Lock()
		want := maps.Clone(acked)
		mu.Unlock()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(uint64(round), 1))})
		close(stop)
		wg.Wait()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}

		opts.testFS = crashed
		l, err = Open(ctx, opts)
		if err != nil {
			t.Fatalf("round %d: open after power loss: %v", round, err)
		}
		for seq, trace := range want {
			ev, _, err := l.Event(seq)
			if err != nil || ev.TraceID != trace {
				t.Fatalf("round %d: acknowledged append %d lost: %+v, %v", round, seq, ev, err)
			}
		}
		checkConsistent(t, l)
		t.Logf("round %d (%d%% of unsynced data kept): %d appends acknowledged before the power loss, %d events after", round, unsynced, len(want), l.Size())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			t.Fatalf("round %d: nothing was acknowledged", round)
		}
	}
}
