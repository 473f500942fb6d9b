package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/keys"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/ledger/audit"
)

// TestCrashAudit kills tccd (SIGKILL) at random moments while three
// clients call a cell, restarts it, and after all rounds checks the audit
// log from an export, as an auditor would: it verifies offline; the tree
// recomputed from the events matches every checkpoint saved along the way,
// and each of them is consistent with the latest; every event is whole and
// canonical; every call.begin is closed exactly once, by its call.end
// or, for calls a crash interrupted, by a call.aborted written at restart;
// and every call a client was answered ok for has its ok call.end. (A
// kill keeps the page cache: ledger.TestPowerLoss covers durability.)
func TestCrashAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("kills tccd repeatedly")
	}
	e := NewEnv(t)
	e.Start()
	e.Register("cells/examples/sha256", nil)
	ctx := context.Background()

	type checkpoint struct {
		size int64
		root tlog.Hash
	}
	var saved []checkpoint
	save := func(round int) {
		cp, err := e.Client().LedgerCheckpoint(ctx, true)
		if err != nil {
			t.Logf("round %d: checkpoint: %v", round, err) // the kill may come first
			return
		}
		size, root := checkpointOf(t, e.Pub, cp.Checkpoint)
		if n := len(saved); n > 0 && size < saved[n-1].size {
			t.Fatalf("round %d: checkpoint size went down from %d to %d", round, saved[n-1].size, size)
		}
		saved = append(saved, checkpoint{size, root})
	}

	const rounds = 8
	var (
		mu  sync.Mutex
		oks []*outcome.Outcome // every call a client saw succeed
	)
	for round := range rounds {
		if round > 0 {
			e.Start()
		}
		save(round)
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Go(func() {
				c := e.Client()
				for i := 0; cctx.Err() == nil; i++ {
					in := json.RawMessage(fmt.Sprintf(`{"text":"r%d w%d i%d"}`, round, w, i))
					if o, err := c.Run(cctx, api.RunRequest{Cell: "sha256", Input: in}); err == nil && o.OK() {
						mu.Lock()
						oks = append(oks, o)
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		save(round)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		e.Kill9()
		cancel()
		wg.Wait()
	}
	e.Start()

	body, err := e.Client().LedgerExport(ctx, api.ExportQuery{})
	if err != nil {
		t.Fatal(err)
	}
	export := readAll(t, body)
	latest, err := e.Client().LedgerCheckpoint(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var consistency [][]byte
	for _, cp := range saved {
		doc, err := e.Client().LedgerConsistency(ctx, uint64(cp.size))
		if err != nil {
			t.Fatalf("consistency from %d: %v", cp.size, err)
		}
		consistency = append(consistency, doc)
	}
	e.Stop()

	// 1. The export verifies offline with the dev key.
	pub, err := keys.LoadVerifier(e.Pub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyExport(strings.NewReader(string(export)), "crash.jsonl", note.VerifierList(pub))
	if err != nil {
		os.WriteFile(filepath.Join(e.Dir, "crash.jsonl"), export, 0o600)
		t.Fatalf("export after %d crashes: %v", rounds, err)
	}

	// 2. Events: whole, canonical, 0..N-1; the tree rebuilt with tlog alone.
	lines := strings.Split(strings.TrimSuffix(string(export), "\n"), "\n")
	var (
		leaves [][]byte
		events []*audit.Event
		th     []tlog.Hash
	)
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = th[x]
		}
		return out, nil
	})
	for _, line := range lines[1 : len(lines)-1] {
		var rec struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		ev, err := audit.DecodeLeaf(rec.Event)
		if err != nil || ev.Seq != uint64(len(leaves)) {
			t.Fatalf("event line %d: %v (seq %v)", len(leaves), err, ev)
		}
		hs, err := tlog.StoredHashes(int64(len(leaves)), rec.Event, hr)
		if err != nil {
			t.Fatal(err)
		}
		th = append(th, hs...)
		leaves, events = append(leaves, rec.Event), append(events, ev)
	}
	if uint64(len(leaves)) != rep.TreeSize {
		t.Fatalf("export holds %d events, its checkpoint %d", len(leaves), rep.TreeSize)
	}

	// 3. Every saved checkpoint matches the rebuilt tree and is consistent
	// with the latest.
	lsize, lroot := checkpointOf(t, e.Pub, latest.Checkpoint)
	if lsize != int64(len(leaves)) {
		t.Fatalf("latest checkpoint %d, export %d", lsize, len(leaves))
	}
	for i, cp := range saved {
		if h, err := tlog.TreeHash(cp.size, hr); err != nil || h != cp.root {
			t.Fatalf("checkpoint of size %d does not match the tree rebuilt from the events (%v)", cp.size, err)
		}
		var p struct {
			Proof []string `json:"proof"`
		}
		json.Unmarshal(consistency[i], &p)
		if err := tlog.CheckTree(hashes(t, p.Proof), lsize, lroot, cp.size, cp.root); err != nil {
			t.Fatalf("checkpoint of size %d is not consistent with the latest (%d): %v", cp.size, lsize, err)
		}
	}

	// 4. Every call.begin is closed exactly once; aborted calls were closed
	// at the next start, before its daemon.start.
	closedBy := map[uint64]*audit.Event{}
	begins, aborted, starts := 0, 0, 0
	lastStart := -1
	for _, ev := range events {
		switch ev.Type {
		case audit.TypeDaemonStart:
			starts++
			lastStart = int(ev.Seq)
		case audit.TypeCallBegin:
			begins++
		case audit.TypeCallEnd, audit.TypeCallAborted:
			if ev.Ref == nil || events[*ev.Ref].Type != audit.TypeCallBegin || events[*ev.Ref].TraceID != ev.TraceID {
				t.Fatalf("event %d (%s) does not close a call.begin of its trace: ref %v", ev.Seq, ev.Type, ev.Ref)
			}
			if prev := closedBy[*ev.Ref]; prev != nil {
				t.Fatalf("call.begin %d closed twice: by %d and %d", *ev.Ref, prev.Seq, ev.Seq)
			}
			closedBy[*ev.Ref] = ev
			if ev.Type == audit.TypeCallAborted {
				aborted++
				if ev.Message != "daemon restarted" || int(*ev.Ref) < lastStart {
					t.Errorf("call.aborted %d: message %q, closes begin %d of another run (last start %d)", ev.Seq, ev.Message, *ev.Ref, lastStart)
				}
			}
		}
	}
	for _, ev := range events {
		if ev.Type == audit.TypeCallBegin && closedBy[ev.Seq] == nil {
			t.Errorf("call.begin %d was never closed", ev.Seq)
		}
	}
	// 5. Every call a client was told succeeded is recorded as such: its
	// call.end, with verdict ok, closes its call.begin, in its trace.
	for _, o := range oks {
		if o.EndSeq >= uint64(len(events)) || o.BeginSeq >= uint64(len(events)) {
			t.Fatalf("call %s (seq %d..%d) answered ok, but the log has only %d events", o.TraceID, o.BeginSeq, o.EndSeq, len(events))
		}
		begin, end := events[o.BeginSeq], events[o.EndSeq]
		if begin.Type != audit.TypeCallBegin || end.Type != audit.TypeCallEnd || end.Ref == nil || *end.Ref != o.BeginSeq ||
			end.Verdict != string(outcome.OK) || begin.TraceID != o.TraceID || end.TraceID != o.TraceID {
			t.Fatalf("call %s answered ok at seq %d..%d; the log holds %s %+v and %s %+v", o.TraceID, o.BeginSeq, o.EndSeq, begin.Type, begin, end.Type, end)
		}
	}
	if starts != rounds+1 {
		t.Errorf("%d daemon.start events, want %d", starts, rounds+1)
	}
	if aborted == 0 {
		t.Errorf("no call was interrupted in %d kills: the test did not test the restart path", rounds)
	}
	t.Logf("%d rounds: %d events, %d calls begun (%d ok seen by clients), %d aborted at restart, %d checkpoints checked",
		rounds, len(events), begins, len(oks), aborted, len(saved))
	waitReaped(t, e.Cgroup)
}

// waitReaped waits until no process lists a cgroup under parent. The
// sweep at restart kills the sandboxes a killed daemon left; they are
// reparented to the host's init, which may reap them late, and until then
// /proc still shows them in their removed cgroups.
func waitReaped(t *testing.T, parent string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	logged := false
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
			if err != nil || !strings.Contains(string(cg), parent+"/") {
				continue
			}
			st, _ := os.ReadFile(filepath.Join(p, "stat"))
			left = append(left, string(st))
		}
		if len(left) == 0 {
			return
		}
		if !logged {
			t.Logf("waiting for %d processes of killed sandboxes to be reaped:\n%s", len(left), strings.Join(left, "\n"))
			logged = true
		}
		if time.Now().After(deadline) {
			t.Errorf("processes still in %s 10s after the daemon stopped:\n%s", parent, strings.Join(left, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
