package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/ledger/audit"
)

// fillLog appends n events spread over tenants acme, globex and none.
func fillLog(t *testing.T, l *Ledger, n int) {
	t.Helper()
	tenants := []string{"acme", "globex", ""}
	for i := range n {
		ev := &Event{Type: TypeVaultRead, Tenant: tenants[i%3], Caller: "uid:1000", Message: fmt.Sprintf("event <%d> & more", i)}
		if _, err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func exportLines(t *testing.T, l *Ledger, opts ExportOptions) []string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := l.Export(context.Background(), &buf, opts); err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(buf.String(), "\n")[:strings.Count(buf.String(), "\n")]
}

func TestExportVerifies(t *testing.T) {
	l := openTest(t, Options{})
	fillLog(t, l, 40)
	vs := testVerifiers(t)
	tests := []struct {
		name       string
		opts       ExportOptions
		wantEvents int
	}{
		{"whole log", ExportOptions{}, 40},
		{"range", ExportOptions{From: 5, To: 17}, 12},
		{"tenant", ExportOptions{Tenant: "acme"}, 14},
		{"tenant range", ExportOptions{From: 4, To: 10, Tenant: "globex"}, 2},
		{"empty", ExportOptions{From: 40}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := exportLines(t, l, tt.opts)
			rep, err := audit.VerifyExport(strings.NewReader(strings.Join(lines, "")), "a.jsonl", vs)
			if err != nil {
				t.Fatalf("VerifyExport: %v", err)
			}
			if rep.Events != tt.wantEvents || rep.TreeSize != 40 || rep.Tenant != tt.opts.Tenant {
				t.Errorf("report = %+v, want %d events of tree 40", rep, tt.wantEvents)
			}
			for _, line := range lines[1 : len(lines)-1] {
				var rec audit.Record
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatal(err)
				}
				ev, err := DecodeEvent(rec.Event)
				if err != nil {
					t.Fatal(err)
				}
				if tt.opts.Tenant != "" && ev.Tenant != tt.opts.Tenant {
					t.Errorf("tenant export holds event %d of tenant %q", ev.Seq, ev.Tenant)
				}
				// Independent check: tlog alone, against the stored tree.
				_, raw, _ := l.Event(ev.Seq)
				if !bytes.Equal(raw, rec.Event) {
					t.Errorf("event %d: exported bytes differ from the stored leaf", ev.Seq)
				}
			}
		})
	}
}

// TestExportTamper changes an export in every way that matters and checks
// that the verifier fails and names the line.
func TestExportTamper(t *testing.T) {
	l := openTest(t, Options{})
	fillLog(t, l, 40)
	vs := testVerifiers(t)
	full := exportLines(t, l, ExportOptions{})               // header, seq 0..39 on lines 2..41, trailer 42
	acme := exportLines(t, l, ExportOptions{Tenant: "acme"}) // seq 0,3,6,... on lines 2..15

	otherKey, _, _ := note.GenerateKey(nil, testOrigin)
	forger, _ := note.NewSigner(otherKey)
	edit := func(lines []string, i int, f func(string) string) []string {
		out := append([]string(nil), lines...)
		out[i-1] = f(out[i-1])
		return out
	}
	del := func(lines []string, i int) []string {
		out := append([]string(nil), lines[:i-1]...)
		return append(out, lines[i:]...)
	}
	swap := func(lines []string, i int) []string {
		out := append([]string(nil), lines...)
		out[i-1], out[i] = out[i], out[i-1]
		return out
	}
	forge := func(line string) string {
		var h audit.Header
		json.Unmarshal([]byte(line), &h)
		cp, _ := audit.UnverifiedCheckpoint([]byte(h.Checkpoint))
		signed, _ := note.Sign(&note.Note{Text: cp.Text()}, forger)
		h.Checkpoint = string(signed)
		b, _ := audit.Marshal(&h)
		return string(b) + "\n"
	}
	alterProof := func(line string) string {
		i := strings.Index(line, `"proof":["`) + len(`"proof":["`)
		c := byte('A')
		if line[i] == 'A' {
			c = 'B'
		}
		return line[:i] + string(c) + line[i+1:]
	}
	tests := []struct {
		name     string
		lines    []string
		raw      string // instead of lines
		wantLine int
		want     string
	}{
		{"field value", edit(full, 8, func(s string) string { return strings.Replace(s, "uid:1000", "uid:1001", 1) }), "", 8, "event seq 6: inclusion proof does not verify against checkpoint size 40"},
		{"html-escaped leaf", edit(full, 8, func(s string) string { return strings.Replace(s, "<", `\u003c`, 1) }), "", 8, "not in canonical form"},
		{"two lines swapped", swap(full, 8), "", 8, "event seq 7: event seq 6 is missing"},
		{"line deleted", del(full, 8), "", 8, "event seq 7: event seq 6 is missing"},
		{"line repeated", append(full[:9:9], full[8:]...), "", 10, "event seq 7: out of order"},
		{"truncated mid-line", nil, strings.Join(full[:20], "") + full[20][:30], 21, "truncated"},
		{"cut at a line", full[:20], "", 21, "without the signed trailer"},
		{"checkpoint forged", edit(full, 1, forge), "", 1, "checkpoint does not verify"},
		{"proof hash altered", edit(full, 30, alterProof), "", 30, "event seq 28: inclusion proof does not verify"},
		{"line appended", append(append([]string(nil), full...), full[5]), "", 43, "after the signed trailer"},
		{"trailer reformatted", edit(full, 42, func(s string) string { return strings.Replace(s, `{"kind":"end",`, `{"KIND":"end", `, 1) }), "", 42, "not in the form tccd writes"},
		{"range widened", edit(full, 1, func(s string) string { return strings.Replace(s, `"from":0`, `"from":1`, 1) }), "", 2, "outside the exported range"},
		{"tenant line deleted", del(acme, 5), "", 5, "event seq 12: the line says it follows seq 9, but the line before holds seq 6"},
		{"tenant first line deleted", del(acme, 2), "", 2, "it is the first event line"},
		{"tenant lines swapped", swap(acme, 5), "", 5, "the line says it follows seq 12"},
		{"tenant claimed", edit(acme, 3, func(s string) string { return strings.Replace(s, `"tenant":"acme"`, `"tenant":"globex"`, 1) }), "", 3, "inclusion proof does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.raw
			if tt.lines != nil {
				in = strings.Join(tt.lines, "")
			}
			_, err := audit.VerifyExport(strings.NewReader(in), "a.jsonl", vs)
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, audit.ErrVerification) {
				t.Fatalf("VerifyExport = %v, want a *VerifyError", err)
			}
			first := ve.Problems[0]
			if first.Line != tt.wantLine || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got:\n%v\nwant first problem on line %d containing %q", err, tt.wantLine, tt.want)
			}
			if tt.name != "checkpoint forged" && !strings.Contains(err.Error(), fmt.Sprintf("a.jsonl:%d: ", tt.wantLine)) {
				t.Errorf("message does not name a.jsonl:%d:\n%v", tt.wantLine, err)
			}
		})
	}

	// A forger without the key cannot re-sign the trailer after removing
	// a line from a tenant export either.
	t.Run("trailer re-signed", func(t *testing.T) {
		lines := del(acme, 5)
		body := strings.Join(lines[:len(lines)-1], "")
		var tr audit.Trailer
		json.Unmarshal([]byte(lines[len(lines)-1]), &tr)
		signed, _ := note.Sign(&note.Note{Text: "tcc-audit-export/v1\n" + testOrigin + "\n13\n12\n00\n"}, forger)
		tr.Signature = string(signed)
		b, _ := audit.Marshal(&tr)
		_, err := audit.VerifyExport(strings.NewReader(body+string(b)+"\n"), "a.jsonl", vs)
		if err == nil || !strings.Contains(err.Error(), "a.jsonl:15: trailer signature does not verify") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestProofDocuments(t *testing.T) {
	l := openTest(t, Options{})
	fillLog(t, l, 10)
	vs := testVerifiers(t)
	ctx := context.Background()
	if _, err := l.Checkpoint(ctx); err != nil { // kept: the consistency proof below finds it
		t.Fatal(err)
	}
	p, err := l.InclusionProof(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := audit.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := audit.ParseInclusionProof(doc)
	if err != nil {
		t.Fatal(err)
	}
	cp, ev, err := p2.Verify(vs)
	if err != nil || ev.Seq != 9 || cp.Size != 10 {
		t.Fatalf("Verify: %v (seq %v, size %d)", err, ev, cp.Size)
	}
	// The same with tlog alone.
	n, _ := note.Open([]byte(p2.Checkpoint), vs)
	c, _ := ParseCheckpoint(n.Text)
	if err := tlog.CheckRecord(tlog.RecordProof(p2.Proof), int64(c.Size), c.Hash, 9, tlog.RecordHash(p2.Event)); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(doc, []byte(`"caller":"uid:1000"`), []byte(`"caller":"uid:0"`), 1)
	if p3, err := audit.ParseInclusionProof(bad); err != nil {
		t.Fatal(err)
	} else if _, _, err := p3.Verify(vs); !errors.Is(err, ErrBadProof) {
		t.Errorf("tampered proof: %v, want ErrBadProof", err)
	}

	fillLog(t, l, 5)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cpr, err := l.ConsistencyProof(10)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ = audit.Marshal(cpr)
	cpr2, err := audit.ParseConsistencyProof(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, newCP, err := cpr2.Verify(vs, nil); err != nil || newCP.Size != 15 {
		t.Fatalf("consistency: %v (new size %d)", err, newCP.Size)
	}
	// Against a checkpoint of another tree of size 10: refused.
	other := openTest(t, Options{})
	fillLog(t, other, 10)
	fake, _ := other.Checkpoint(ctx)
	if _, _, err := cpr2.Verify(vs, fake); !errors.Is(err, ErrBadProof) {
		t.Errorf("consistency with a forked checkpoint: %v, want ErrBadProof", err)
	}
}

func TestCallIndex(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	ref := func(n uint64) *uint64 { return &n }
	begin := func() uint64 {
		seq, err := l.Append(ctx, &Event{Type: TypeCallBegin, TraceID: NewTraceID()})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	b1, b2, b3 := begin(), begin(), begin()
	end, err := l.Append(ctx, &Event{Type: TypeCallEnd, Ref: ref(b1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, &Event{Type: TypeCallAborted, Ref: ref(b3), Message: "daemon restarted"}); err != nil {
		t.Fatal(err)
	}
	open, err := l.OpenCalls()
	if err != nil || len(open) != 1 || open[0].Seq != b2 {
		t.Fatalf("OpenCalls = %v, %v; want only %d", open, err, b2)
	}
	if got, err := l.EndOf(b1); err != nil || got != end {
		t.Errorf("EndOf(%d) = %d, %v; want %d", b1, got, err, end)
	}
	if _, err := l.EndOf(b2); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndOf(open call) = %v, want ErrNotFound", err)
	}
	tests := []struct {
		name string
		ev   *Event
	}{
		{"second end", &Event{Type: TypeCallEnd, Ref: ref(b1)}},
		{"end of a non-begin", &Event{Type: TypeCallEnd, Ref: ref(end)}},
		{"end past the log", &Event{Type: TypeCallAborted, Ref: ref(1000)}},
		{"replay of an end", &Event{Type: TypeCallReplay, Ref: ref(end)}},
		{"replay past the log", &Event{Type: TypeCallReplay, Ref: ref(1000)}},
		{"ref on a begin", &Event{Type: TypeCallBegin, Ref: ref(b1)}},
		{"ref past the log", &Event{Type: TypeVaultRead, Ref: ref(1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.Append(ctx, tt.ev); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Append = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := l.Append(ctx, &Event{Type: TypeCallReplay, Ref: ref(b1)}); err != nil {
		t.Errorf("replay of a begin: %v", err)
	}
}

func TestLastAndWait(t *testing.T) {
	l := openTest(t, Options{})
	fillLog(t, l, 10)
	got, err := l.Last(3, Filter{Tenant: "acme"}) // seqs 0 3 6 9
	if err != nil || len(got) != 3 || got[0].Event.Seq != 3 || got[2].Event.Seq != 9 {
		t.Fatalf("Last(3, acme) = %v, %v", got, err)
	}
	if got, _ := l.Last(100, Filter{}); len(got) != 10 || got[0].Event.Seq != 0 {
		t.Errorf("Last(100) returned %d events", len(got))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing new = %v", err)
	}
	done := make(chan error)
	go func() { done <- l.Wait(context.Background(), 10) }()
	fillLog(t, l, 1)
	if err := <-done; err != nil {
		t.Errorf("Wait = %v", err)
	}
}
