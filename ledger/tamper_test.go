package ledger

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/ledger/audit"
)

// TestTamper changes a closed ledger's store as someone with the disk but
// not the checkpoint key could, and checks that Open refuses what it can
// see at once and that nothing altered is ever served or signed.
func TestTamper(t *testing.T) {
	otherSKey, otherVKey, _ := note.GenerateKey(nil, testOrigin)
	forger, _ := note.NewSigner(otherSKey)
	otherVerifier, _ := note.NewVerifier(otherVKey)
	ctx := context.Background()

	// rewrite changes the message of event seq and returns its new bytes.
	rewrite := func(t *testing.T, db *pebble.DB, seq uint64) {
		t.Helper()
		raw, err := getCopy(db, eventKey(seq))
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := DecodeEvent(raw)
		ev.Message = "not what happened"
		enc, _ := ev.Encode()
		if err := db.Set(eventKey(seq), enc, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// rehash recomputes every stored hash from the events, as a careful
	// editor would, and returns the new root.
	rehash := func(t *testing.T, db *pebble.DB) (uint64, tlog.Hash) {
		t.Helper()
		var hs []tlog.Hash
		hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for i, x := range idx {
				out[i] = hs[x]
			}
			return out, nil
		})
		var n uint64
		err := scan(db, pEvent, func(_, v []byte) error {
			h, err := tlog.StoredHashes(int64(n), v, hr)
			hs = append(hs, h...)
			n++
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			if err := db.Set(hashKey(int64(i)), h[:], pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		root, _ := tlog.TreeHash(int64(n), hr)
		return n, root
	}
	del := func(t *testing.T, db *pebble.DB, prefix []byte) {
		t.Helper()
		if err := db.DeleteRange(prefix, prefixEnd(prefix), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	set := func(t *testing.T, db *pebble.DB, k, v []byte) {
		t.Helper()
		if err := db.Set(k, v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		tamper  func(t *testing.T, db *pebble.DB)
		other   bool  // open with another key pair
		wantErr error // from Open; nil: Open succeeds and check runs
		check   func(t *testing.T, l *Ledger)
	}{
		{name: "untouched", check: func(t *testing.T, l *Ledger) {
			var buf bytes.Buffer
			if _, err := l.Export(ctx, &buf, ExportOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.VerifyExport(&buf, "a.jsonl", testVerifiers(t)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "opened with another key", other: true, wantErr: ErrKeyMismatch},
		{name: "event and tree rewritten", wantErr: ErrCorrupt, tamper: func(t *testing.T, db *pebble.DB) {
			rewrite(t, db, 3)
			rehash(t, db)
		}},
		{name: "event and tree rewritten, checkpoints removed", wantErr: ErrCorrupt, tamper: func(t *testing.T, db *pebble.DB) {
			rewrite(t, db, 3)
			rehash(t, db)
			del(t, db, pCP)
			del(t, db, keyCheckpoint)
		}},
		{name: "event and tree rewritten, checkpoint re-signed with another key", wantErr: ErrKeyMismatch, tamper: func(t *testing.T, db *pebble.DB) {
			rewrite(t, db, 3)
			n, root := rehash(t, db)
			signed, _ := note.Sign(&note.Note{Text: Checkpoint{Origin: testOrigin, Size: n, Hash: root}.Text()}, forger)
			set(t, db, keyCheckpoint, signed)
		}},
		{name: "event appended with its hashes", wantErr: ErrCorrupt, tamper: func(t *testing.T, db *pebble.DB) {
			enc, _ := (&Event{Seq: 12, TimeNS: 1, Type: TypeCallBegin, Message: "never happened"}).Encode()
			set(t, db, eventKey(12), enc)
			set(t, db, keySize, seqKey(nil, 13))
			rehash(t, db)
		}},
		{name: "newest event rewritten", wantErr: ErrCorrupt, tamper: func(t *testing.T, db *pebble.DB) {
			rewrite(t, db, 11)
		}},
		{name: "old event rewritten", tamper: func(t *testing.T, db *pebble.DB) {
			rewrite(t, db, 3)
		}, check: func(t *testing.T, l *Ledger) {
			// Open looks only at the newest event; every read proves.
			if _, _, err := l.Event(3); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Event(3) = %v, want ErrCorrupt", err)
			}
			if _, err := l.InclusionProof(ctx, 3); !errors.Is(err, ErrCorrupt) {
				t.Errorf("InclusionProof(3) = %v, want ErrCorrupt", err)
			}
			if _, err := l.Last(20, Filter{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Last = %v, want ErrCorrupt", err)
			}
			if _, err := l.Export(ctx, &bytes.Buffer{}, ExportOptions{Tenant: "acme"}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("acme's export = %v, want ErrCorrupt", err)
			}
		}},
		{name: "event removed", tamper: func(t *testing.T, db *pebble.DB) {
			del(t, db, eventKey(5))
		}, check: func(t *testing.T, l *Ledger) {
			if _, _, err := l.Event(5); err == nil {
				t.Error("Event(5) of a removed event succeeded")
			}
			var buf bytes.Buffer
			if _, err := l.Export(ctx, &buf, ExportOptions{Tenant: "globex"}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "event 5 is missing") {
				t.Errorf("globex's export = %v, want ErrCorrupt naming event 5", err)
			}
		}},
		{name: "tenant index entry removed", tamper: func(t *testing.T, db *pebble.DB) {
			del(t, db, tenantKey("acme", 3))
		}, check: func(t *testing.T, l *Ledger) {
			// Exports do not trust the index: seq 3 is still acme's.
			var buf bytes.Buffer
			if _, err := l.Export(ctx, &buf, ExportOptions{Tenant: "acme"}); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.VerifyExport(bytes.NewReader(buf.Bytes()), "acme.jsonl", testVerifiers(t)); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), `"event":{"seq":3,`) {
				t.Errorf("acme's export lacks seq 3, whose index entry was removed:\n%s", buf.String())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, Options{Dir: dir})
			fillLog(t, l, 12) // acme at 0, 3, 6, 9
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{Logger: pebbleLogger{}})
				if err != nil {
					t.Fatal(err)
				}
				tt.tamper(t, db)
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			opts := testOptions(t, dir)
			if tt.other {
				opts.Signer, opts.Verifier = forger, otherVerifier
			}
			l, err := Open(ctx, opts)
			if tt.wantErr != nil {
				if err == nil {
					l.Close()
				}
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "tccd") {
					t.Fatalf("Open = %v, want %v and what to do", err, tt.wantErr)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			tt.check(t, l)
		})
	}
}
