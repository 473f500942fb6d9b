package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// checkpointOf opens a signed checkpoint with the env's dev key using only
// x/mod: an auditor's view, independent of package ledger/audit.
func checkpointOf(t *testing.T, pubPath, signed string) (size int64, root tlog.Hash) {
	t.Helper()
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify with %s: %v\n%s", pubPath, err, signed)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 3 || lines[0] != v.Name() {
		t.Fatalf("checkpoint body %q", n.Text)
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	h, err2 := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || err2 != nil || len(h) != 32 {
		t.Fatalf("checkpoint body %q", n.Text)
	}
	copy(root[:], h)
	return size, root
}

func hashes(t *testing.T, b64 []string) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		h, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(h) != 32 {
			t.Fatalf("proof hash %q", s)
		}
		copy(out[i][:], h)
	}
	return out
}

type leaf struct {
	Seq          uint64                `json:"seq"`
	Type         string                `json:"type"`
	TraceID      string                `json:"trace_id"`
	Tenant       string                `json:"tenant"`
	Caller       string                `json:"caller"`
	InputSHA256  string                `json:"input_sha256"`
	OutputSHA256 string                `json:"output_sha256"`
	Verdict      string                `json:"verdict"`
	Message      string                `json:"message"`
	Usage        *json.RawMessage      `json:"usage"`
	Wipe         *struct{ Clean bool } `json:"wipe"`
	Attrs        map[string]string     `json:"attrs"`
	Ref          *uint64               `json:"ref"`
}

// TestAudit drives the ledger verbs of tccctl against one daemon: key,
// checkpoint, show, tail (-f), prove, consistency, replay, tenant
// filtering, and export + offline verify with tampering.
func TestAudit(t *testing.T) {
	e := NewEnv(t)
	e.Start()
	e.Register("cells/examples/sha256", nil)
	ndID := e.Register("cells/examples/sha256", func(y string) string {
		y = strings.Replace(y, "name: sha256", "name: sha256-nd", 1)
		return strings.Replace(y, "nondeterminism: []", "nondeterminism: [time]", 1)
	})
	ctx := context.Background()
	run := func(c *api.Client, cell, text string) *outcome.Outcome {
		t.Helper()
		o, err := c.Run(ctx, api.RunRequest{Cell: cell, Input: json.RawMessage(fmt.Sprintf(`{"text":%q}`, text))})
		if err != nil || !o.OK() {
			t.Fatalf("run %s: %v %+v", cell, err, o)
		}
		return o
	}
	o1 := run(e.Client(), "sha256", "abc")
	o2 := run(e.Client(), "sha256", "def")
	o3 := run(e.Client(), "sha256-nd", "xyz")
	show := func(c *api.Client, seq uint64) (leaf, []byte) {
		t.Helper()
		raw, err := c.LedgerEvent(ctx, seq)
		if err != nil {
			t.Fatalf("show %d: %v", seq, err)
		}
		var l leaf
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		return l, raw
	}

	var early string // a checkpoint kept for the consistency proof
	t.Run("key and checkpoint", func(t *testing.T) {
		pub, _ := os.ReadFile(e.Pub)
		if got := e.MustCtl("ledger", "key"); strings.TrimSpace(got) != strings.TrimSpace(string(pub)) {
			t.Errorf("ledger key = %q, want the --ledger-key's verifier %q", got, pub)
		}
		early = e.MustCtl("ledger", "checkpoint")
		if size, _ := checkpointOf(t, e.Pub, early); size <= int64(o3.EndSeq) {
			t.Errorf("checkpoint size %d does not cover the call.end at %d", size, o3.EndSeq)
		}
	})

	t.Run("show", func(t *testing.T) {
		begin, _ := show(e.Client(), o1.BeginSeq)
		end, _ := show(e.Client(), o1.EndSeq)
		in := sha256.Sum256([]byte(`{"text":"abc"}`))
		switch {
		case begin.Type != "call.begin" || end.Type != "call.end":
			t.Errorf("types %s, %s", begin.Type, end.Type)
		case begin.TraceID != o1.TraceID || end.TraceID != o1.TraceID || !strings.HasPrefix(o1.TraceID[14:], "7"):
			t.Errorf("trace ids %s, %s; outcome %s (want one UUIDv7)", begin.TraceID, end.TraceID, o1.TraceID)
		case begin.InputSHA256 != hex.EncodeToString(in[:]) || end.OutputSHA256 == "" || end.Verdict != "ok":
			t.Errorf("hashes/verdict: %+v", end)
		case end.Ref == nil || *end.Ref != o1.BeginSeq || end.Usage == nil || end.Wipe == nil || !end.Wipe.Clean || end.Caller != "uid:0":
			t.Errorf("call.end: %+v", end)
		}
		if out := e.MustCtl("ledger", "show", fmt.Sprint(o1.EndSeq)); !strings.Contains(out, "wipe:") || !strings.Contains(out, "clean") {
			t.Errorf("ledger show:\n%s", out)
		}
	})

	t.Run("tail", func(t *testing.T) {
		out := e.MustCtl("ledger", "tail", "--trace", o2.TraceID, "--json")
		var seqs []uint64
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var l leaf
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("tail --json line %q: %v", line, err)
			}
			seqs = append(seqs, l.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint([]uint64{o2.BeginSeq, o2.EndSeq}) {
			t.Errorf("tail --trace: seqs %v, want [%d %d]", seqs, o2.BeginSeq, o2.EndSeq)
		}

		st, err := e.Client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, "tccctl"), "ledger", "tail", "-f", "--from", fmt.Sprint(st.Ledger.Size), "--type", "call.end", "--json")
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+e.Socket)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		time.Sleep(100 * time.Millisecond) // usually following by now; --from covers a late start
		o := run(e.Client(), "sha256", "follow")
		select {
		case line := <-lines:
			var l leaf
			if json.Unmarshal([]byte(line), &l); l.Seq != o.EndSeq || l.Type != "call.end" {
				t.Errorf("tail -f printed %s, want the call.end at %d", line, o.EndSeq)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("tail -f printed nothing within 10s of a call")
		}
	})

	t.Run("prove", func(t *testing.T) {
		doc := e.MustCtl("ledger", "prove", fmt.Sprint(o1.EndSeq), "--json")
		var p struct {
			Format     string          `json:"format"`
			Seq        int64           `json:"seq"`
			TreeSize   int64           `json:"tree_size"`
			Event      json.RawMessage `json:"event"`
			Proof      []string        `json:"proof"`
			Checkpoint string          `json:"checkpoint"`
		}
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			t.Fatalf("prove --json: %v\n%s", err, doc)
		}
		size, root := checkpointOf(t, e.Pub, p.Checkpoint)
		_, stored := show(e.Client(), o1.EndSeq)
		if p.Format != "tcc-proof/v1" || p.Seq != int64(o1.EndSeq) || size != p.TreeSize || string(p.Event) != strings.TrimSpace(string(stored)) {
			t.Fatalf("proof document: format %s seq %d size %d/%d", p.Format, p.Seq, p.TreeSize, size)
		}
		// An independent verifier: tlog alone.
		if err := tlog.CheckRecord(hashes(t, p.Proof), size, root, p.Seq, tlog.RecordHash(p.Event)); err != nil {
			t.Fatalf("tlog.CheckRecord: %v", err)
		}
		pf := filepath.Join(e.Dir, "proof.json")
		os.WriteFile(pf, []byte(doc), 0o600)
		if out := e.MustCtl("ledger", "verify", pf, "--key", e.Pub); !strings.Contains(out, "OK") {
			t.Errorf("verify proof: %s", out)
		}
		os.WriteFile(pf, []byte(strings.Replace(doc, `"verdict":"ok"`, `"verdict":"error"`, 1)), 0o600)
		if out, code := e.Ctl("ledger", "verify", pf, "--key", e.Pub); code != 4 {
			t.Errorf("verify of a tampered proof: exit %d, want 4\n%s", code, out)
		}
	})

	t.Run("consistency", func(t *testing.T) {
		oldSize, oldRoot := checkpointOf(t, e.Pub, early)
		run(e.Client(), "sha256", "later")
		e.MustCtl("ledger", "checkpoint")
		doc := e.MustCtl("ledger", "consistency", fmt.Sprint(oldSize), "--json")
		var p struct {
			OldSize, NewSize int64
			NewCheckpoint    string `json:"new_checkpoint"`
			Proof            []string
		}
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			t.Fatal(err)
		}
		newSize, newRoot := checkpointOf(t, e.Pub, p.NewCheckpoint)
		if newSize <= oldSize {
			t.Fatalf("new size %d, old %d", newSize, oldSize)
		}
		if err := tlog.CheckTree(hashes(t, p.Proof), newSize, newRoot, oldSize, oldRoot); err != nil {
			t.Fatalf("tlog.CheckTree against the checkpoint kept earlier: %v", err)
		}
		cf, of := filepath.Join(e.Dir, "cons.json"), filepath.Join(e.Dir, "early.cp")
		os.WriteFile(cf, []byte(doc), 0o600)
		os.WriteFile(of, []byte(early), 0o600)
		e.MustCtl("ledger", "verify", cf, "--key", e.Pub, "--old", of)
	})

	t.Run("replay", func(t *testing.T) {
		replay := func(seq uint64) (api.Replay, string, int) {
			t.Helper()
			out, errOut, code := e.CtlSplit(nil, "ledger", "replay", fmt.Sprint(seq), "--json")
			var r api.Replay
			json.Unmarshal([]byte(out), &r)
			return r, out + errOut, code
		}
		r, out, code := replay(o1.EndSeq)
		if code != 0 || !r.Match || r.Determinism != api.Deterministic || r.Original.BeginSeq != o1.BeginSeq || r.Replay.OutputSHA256 == "" {
			t.Fatalf("replay of a deterministic call: exit %d\n%s", code, out)
		}
		ev, _ := show(e.Client(), r.Seq)
		if ev.Type != "call.replay" || ev.Ref == nil || *ev.Ref != o1.BeginSeq || ev.Attrs["match"] != "true" ||
			ev.Attrs["replay_end"] != fmt.Sprint(r.Replay.EndSeq) || ev.TraceID != r.TraceID {
			t.Errorf("call.replay event: %+v", ev)
		}
		if rb, _ := show(e.Client(), r.Replay.BeginSeq); rb.TraceID != r.TraceID {
			t.Errorf("the replay's call.begin has trace %s, the call.replay %s", rb.TraceID, r.TraceID)
		}
		if r, out, code := replay(o3.BeginSeq); code != 0 || r.Determinism != api.NondeterministicByContract {
			t.Errorf("replay of a cell declaring nondeterminism: exit %d\n%s", code, out)
		}
		if _, out, code := replay(0); code == 0 || !strings.Contains(out, "replay takes the seq of a call.begin or call.end") {
			t.Errorf("replay of daemon.start: exit %d\n%s", code, out)
		}
		// Evicted: the blob of o2's input is gone.
		sum := sha256.Sum256([]byte(`{"text":"def"}`))
		if err := os.Remove(filepath.Join(e.State, "blobs", "_", hex.EncodeToString(sum[:]))); err != nil {
			t.Fatalf("o2's input blob: %v", err)
		}
		if _, out, code := replay(o2.EndSeq); code == 0 || !strings.Contains(out, "evicted") {
			t.Errorf("replay without the input: exit %d\n%s", code, out)
		}
		e.MustCtl("cell", "revoke", ndID)
		if _, out, code := replay(o3.EndSeq); code == 0 || !strings.Contains(out, "revoked") {
			t.Errorf("replay of a revoked identity: exit %d\n%s", code, out)
		}
	})

	t.Run("tenant", func(t *testing.T) {
		tok, err := e.Client().IssueToken(ctx, api.TokenRequest{Tenant: "acme", Scopes: []string{"tools:call"}})
		if err != nil {
			t.Fatal(err)
		}
		acme := e.Client()
		acme.Token = tok.Token
		oa := run(acme, "sha256", "acme") // a shared cell: the call is acme's
		if ev, _ := show(acme, oa.EndSeq); ev.Tenant != "acme" {
			t.Errorf("acme's call.end has tenant %q", ev.Tenant)
		}
		// A call of acme's own cell by root (an admin without a tenant) is
		// acme's too: the cell's tenant decides.
		if _, err := e.Client().Register(ctx, mustOpen(t, e.Signed("cells/examples/sha256", func(y string) string {
			return strings.Replace(y, "name: sha256", "name: sha256-acme", 1)
		})), "acme"); err != nil {
			t.Fatal(err)
		}
		rootCall := run(e.Client(), "sha256-acme", "root calls acme's cell")
		if ev, _ := show(e.Client(), rootCall.BeginSeq); ev.Tenant != "acme" || ev.Caller != "uid:0" {
			t.Errorf("root's call of acme's cell: tenant %q, caller %q; want acme, uid:0", ev.Tenant, ev.Caller)
		}
		if r, err := acme.LedgerReplay(ctx, rootCall.EndSeq); err != nil || !r.Match {
			t.Errorf("acme replays root's call of its cell: %v %+v", err, r)
		}
		if _, err := acme.LedgerEvent(ctx, o1.EndSeq); !isCode(err, api.CodeNotFound) {
			t.Errorf("acme reads another tenant's event: %v, want not_found", err)
		}
		if _, err := acme.LedgerProof(ctx, o1.EndSeq); !isCode(err, api.CodeNotFound) {
			t.Errorf("acme proves another tenant's event: %v, want not_found", err)
		}
		body, err := acme.LedgerEvents(ctx, api.EventQuery{Last: 100})
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(body)
		sc.Buffer(nil, 1<<20)
		var issued *uint64
		for sc.Scan() {
			var l leaf
			json.Unmarshal(sc.Bytes(), &l)
			if l.Tenant != "acme" {
				t.Errorf("acme's tail shows event %d of tenant %q", l.Seq, l.Tenant)
			}
			if l.Type == "token.issue" {
				issued = &l.Seq
			}
		}
		body.Close()
		if issued == nil {
			t.Fatal("acme's tail does not show the issue of its token")
		}
		if _, err := acme.LedgerCheckpoint(ctx, true); !isCode(err, api.CodeForbidden) {
			t.Errorf("acme keeps a checkpoint: %v, want forbidden (admins only)", err)
		}
		if _, err := acme.LedgerEvents(ctx, api.EventQuery{Last: 10_001}); !isCode(err, api.CodeBadRequest) {
			t.Errorf("acme tails 10,001 events: %v, want bad_request", err)
		}
		if _, err := acme.LedgerExport(ctx, api.ExportQuery{Tenant: "globex"}); !isCode(err, api.CodeForbidden) {
			t.Errorf("acme exports globex: %v, want forbidden", err)
		}
		if r, err := acme.LedgerReplay(ctx, o1.EndSeq); !isCode(err, api.CodeNotFound) {
			t.Errorf("acme replays another tenant's call: %v %+v, want not_found", err, r)
		}
		// acme's own export verifies offline and holds acme's events: all
		// of these, and no other tenant's.
		body, err = acme.LedgerExport(ctx, api.ExportQuery{})
		if err != nil {
			t.Fatal(err)
		}
		data := readAll(t, body)
		f := filepath.Join(e.Dir, "acme.jsonl")
		os.WriteFile(f, data, 0o600)
		if out := e.MustCtl("ledger", "verify", f, "--key", e.Pub); !strings.Contains(out, "tenant acme") {
			t.Errorf("verify acme's export: %s", out)
		}
		has := map[uint64]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var rec struct{ Event *leaf }
			if json.Unmarshal([]byte(line), &rec); rec.Event != nil {
				has[rec.Event.Seq] = true
			}
		}
		for what, seq := range map[string]uint64{"token.issue": *issued, "acme's call.begin": oa.BeginSeq, "acme's call.end": oa.EndSeq,
			"root's call.begin of acme's cell": rootCall.BeginSeq, "root's call.end of acme's cell": rootCall.EndSeq} {
			if !has[seq] {
				t.Errorf("acme's export lacks %s (seq %d)", what, seq)
			}
		}
	})

	t.Run("export and verify offline", func(t *testing.T) {
		out, errOut, code := e.CtlSplit(nil, "ledger", "export")
		if code != 0 {
			t.Fatalf("export: exit %d: %s", code, errOut)
		}
		a := filepath.Join(e.Dir, "a.jsonl")
		if err := os.WriteFile(a, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		e.Stop() // the verifier needs no daemon
		if out := e.MustCtl("ledger", "verify", a, "--key", e.Pub); !strings.Contains(out, "OK") {
			t.Fatalf("verify: %s", out)
		}
		lines := strings.SplitAfter(out, "\n")
		lines = lines[:len(lines)-1]
		if len(lines) < 12 {
			t.Fatalf("export has only %d lines", len(lines))
		}
		otherKey, _, _ := note.GenerateKey(rand.Reader, "dev")
		forger, _ := note.NewSigner(otherKey)
		// Line n (1-based) is event seq n-2.
		tests := []struct {
			name string
			edit func([]string) []string
			want string
		}{
			{"field value", func(l []string) []string {
				l[4] = strings.Replace(l[4], `"type":"`, `"type":"x`, 1)
				return l
			}, "b.jsonl:5: event seq 3: inclusion proof does not verify"},
			{"two lines swapped", func(l []string) []string { l[6], l[7] = l[7], l[6]; return l }, "b.jsonl:7: event seq 6:"},
			{"line deleted", func(l []string) []string { return append(l[:6:6], l[7:]...) }, "b.jsonl:7: event seq 6: event seq 5 is missing"},
			{"truncated", func(l []string) []string { return append(l[:9:9], l[9][:20]) }, "b.jsonl:10: the file ends in the middle of this line"},
			{"checkpoint forged", func(l []string) []string {
				var h map[string]any
				json.Unmarshal([]byte(l[0]), &h)
				cp := h["checkpoint"].(string)
				signed, _ := note.Sign(&note.Note{Text: cp[:strings.Index(cp, "\n\n")+1]}, forger)
				h["checkpoint"] = string(signed)
				b, _ := json.Marshal(h)
				l[0] = string(b) + "\n"
				return l
			}, "b.jsonl:1: checkpoint does not verify"},
			{"proof hash altered", func(l []string) []string {
				i := strings.Index(l[8], `"proof":["`) + len(`"proof":["`)
				c := "A"
				if l[8][i] == 'A' {
					c = "B"
				}
				l[8] = l[8][:i] + c + l[8][i+1:]
				return l
			}, "b.jsonl:9: event seq 7: inclusion proof does not verify"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := filepath.Join(e.Dir, "b.jsonl")
				os.WriteFile(b, []byte(strings.Join(tt.edit(append([]string(nil), lines...)), "")), 0o600)
				out, code := e.Ctl("ledger", "verify", "b.jsonl", "--key", e.Pub)
				if code != 4 || !strings.Contains(out, tt.want) {
					t.Errorf("exit %d, want 4 and %q:\n%s", code, tt.want, out)
				}
			})
		}
	})
}

// TestAuditKeys starts tccd on a ledger with the wrong checkpoint key, with
// the key missing, and with the key inside the state directory.
func TestAuditKeys(t *testing.T) {
	e := NewEnv(t)
	e.Start()
	e.Stop()
	// tccd exits before it touches the socket or any cgroup.
	refused := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "tccd"), append([]string{
			"--state-dir", e.State, "--socket", e.Socket, "--trust", e.Pub, "--cgroup-parent", e.Cgroup}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("tccd %v started (%v):\n%s", args, err, out)
		}
		return string(out)
	}
	if out, code := e.Ctl("key", "generate", "other", "--out", e.Dir); code != 0 {
		t.Fatal(out)
	}
	if out := refused("--ledger-key", filepath.Join(e.Dir, "other.key")); !strings.Contains(out, `does not verify with checkpoint key "other"`) || !strings.Contains(out, "--ledger-key") {
		t.Errorf("tccd with another key:\n%s", out)
	}
	if out := refused(); !strings.Contains(out, "tcc-ledger.key is missing, but the ledger") {
		t.Errorf("tccd whose default key is missing:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.State, "keys", "tcc-ledger.key")); err == nil {
		t.Error("tccd made a new key for an existing ledger")
	}

	// The same key, kept in the state directory: it works, and warns.
	inState := filepath.Join(e.State, "keys", "dev.key")
	os.MkdirAll(filepath.Dir(inState), 0o700)
	if b, err := os.ReadFile(e.Key); err != nil || os.WriteFile(inState, b, 0o600) != nil {
		t.Fatal(err)
	}
	e.args = append(e.args, "--ledger-key", inState)
	e.Start()
	if out := e.MustCtl("status"); !strings.Contains(out, "WARNING") || !strings.Contains(out, "inside the state directory") {
		t.Errorf("status with the key in the state directory:\n%s", out)
	}
}

func isCode(err error, code api.Code) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == code
}

func readAll(t *testing.T, r io.ReadCloser) []byte {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
