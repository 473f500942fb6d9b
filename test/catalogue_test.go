package test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/trustcells/tcc/daemon/api"
)

// Issue 2: the catalogue through the real tccctl and tccd — keys, pack,
// sign, verify, register, list, inspect, lineage, rollback, revoke,
// syscalls — and every way a capsule or a catalogue change is refused.

// TestCatalogueVerbs walks the happy path of every catalogue verb, text and
// --json, against one daemon.
func TestCatalogueVerbs(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()

	// key generate: the secret is 0600, the verifier names the key.
	out := e.MustCtl("key", "generate", "ops", "--out", e.Dir)
	if !strings.Contains(out, "ops.key") || !strings.Contains(out, "verifier: ops+") {
		t.Errorf("key generate output:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(e.Dir, "ops.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ops.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// pack, sign, verify, local inspect.
	dir := e.Capsule("cells/examples/sha256", nil)
	cell := dir + ".cell"
	var packed struct {
		Identity, Name, Tar string
	}
	decodeJSON(t, e.MustCtl("cell", "pack", dir, "-o", cell, "--json"), &packed)
	if packed.Name != "sha256" || !strings.HasPrefix(packed.Identity, "sha256:") || packed.Tar != cell {
		t.Fatalf("pack --json = %+v", packed)
	}
	id := packed.Identity
	if out := e.MustCtl("cell", "sign", cell, "--key", e.Key); !strings.Contains(out, "signed sha256 "+id+" with dev") {
		t.Errorf("sign: %s", out)
	}
	var verified struct {
		Identity string
		Signers  []string
	}
	decodeJSON(t, e.MustCtl("cell", "verify", cell, "--trust", e.Pub, "--json"), &verified)
	if verified.Identity != id || !slices.Equal(verified.Signers, []string{"dev"}) {
		t.Errorf("verify --json = %+v, want identity %s signed by [dev]", verified, id)
	}
	var local struct {
		Identity string `json:"identity"`
		Verified bool   `json:"verified"`
	}
	decodeJSON(t, e.MustCtl("cell", "inspect", cell, "--trust", e.Pub, "--json"), &local)
	if local.Identity != id || !local.Verified {
		t.Errorf("inspect CAPSULE --trust --json = %+v, want %s verified", local, id)
	}
	if out := e.MustCtl("cell", "inspect", cell); !strings.Contains(out, "not checked") || !strings.Contains(out, id) {
		t.Errorf("inspect CAPSULE without --trust should show the identity and say the signature is not checked:\n%s", out)
	}

	// register, list, inspect from the daemon, syscalls.
	var reg api.Registered
	decodeJSON(t, e.MustCtl("cell", "register", cell, "--json"), &reg)
	if reg.Identity != id || reg.Name != "sha256" || reg.Parent != "" || reg.Seq == 0 {
		t.Errorf("register --json = %+v", reg)
	}
	var list []api.CellSummary
	decodeJSON(t, e.MustCtl("cell", "list", "--json"), &list)
	if len(list) != 1 || list[0].Name != "sha256" || list[0].Head != id || list[0].Versions != 1 || list[0].Phase != "analyze" {
		t.Errorf("list --json = %+v", list)
	}
	if out := e.MustCtl("cell", "list"); !strings.Contains(out, "sha256") || !strings.Contains(out, id[:len("sha256:")+12]) {
		t.Errorf("list:\n%s", out)
	}
	var got api.Cell
	decodeJSON(t, e.MustCtl("cell", "inspect", "sha256", "--json"), &got)
	if got.Identity != id || !got.Head || got.Revoked || !slices.Equal(got.Signers, []string{"dev"}) || len(got.Manifest) == 0 {
		t.Errorf("inspect NAME --json = %+v", got)
	}
	// A unique prefix resolves too.
	decodeJSON(t, e.MustCtl("cell", "inspect", id[:len("sha256:")+10], "--json"), &got)
	if got.Identity != id {
		t.Errorf("inspect PREFIX = %s, want %s", got.Identity, id)
	}
	var sc api.Syscalls
	decodeJSON(t, e.MustCtl("cell", "syscalls", "sha256", "--json"), &sc)
	for _, want := range []string{"read", "write", "exit_group", "futex"} {
		if !slices.Contains(sc.Allowed, want) {
			t.Errorf("syscalls: %s missing from %v", want, sc.Allowed)
		}
	}
	for _, never := range []string{"mount", "ptrace", "bpf", "unshare", "setns", "keyctl", "socket", "execveat"} {
		if slices.Contains(sc.Allowed, never) {
			t.Errorf("syscalls: sha256 declares no groups but %s is allowed", never)
		}
	}
	stdout, stderr, code := e.CtlSplit(nil, "cell", "syscalls", "sha256")
	if code != 0 || strings.Count(stdout, "\n") != len(sc.Allowed) || !strings.Contains(stderr, "everything else is denied") {
		t.Errorf("syscalls (text): exit %d, %d lines for %d syscalls, stderr %q", code, strings.Count(stdout, "\n"), len(sc.Allowed), stderr)
	}

	// Shell completion.
	if out := e.MustCtl("completion", "bash"); !strings.Contains(out, "__start_tccctl") {
		t.Errorf("completion bash does not print a bash completion script:\n%s", tail(out, 300))
	}
}

// TestLineage registers a chain, moves the head with rollback, revokes, and
// checks every refusal of the parent/head rules with its message, exit code
// and API code.
func TestLineage(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	ctx := context.Background()
	c := e.Client()

	v1 := e.Register("cells/examples/sha256", nil)
	v2cell := e.Signed("cells/examples/sha256", version(2, v1))
	var reg api.Registered
	decodeJSON(t, e.MustCtl("cell", "register", v2cell, "--json"), &reg)
	v2 := reg.Identity
	if reg.Parent != v1 {
		t.Fatalf("v2 registered with parent %s, want %s", reg.Parent, v1)
	}
	if h := head(t, e, "sha256"); h != v2 {
		t.Fatalf("head after v2 = %s, want %s", h, v2)
	}

	// Wrong, missing and unknown parents: refused, naming the head.
	refusals := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"wrong parent (not the head)", version(3, v1), "parent must be the current head " + v2 + "; got " + v1},
		{"missing parent", version(3, ""), "parent must be the current head " + v2 + "; the manifest names no parent"},
		{"unknown parent", version(3, "sha256:"+strings.Repeat("ab", 32)), "parent must be the current head " + v2},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			tarPath := e.Signed("cells/examples/sha256", tt.edit)
			out, code := e.Ctl("cell", "register", tarPath)
			if code != exitFailure || !strings.Contains(out, tt.want) {
				t.Errorf("register: exit %d, want %d; output %q should contain %q", code, exitFailure, out, tt.want)
			}
			_, err := c.Register(ctx, mustOpen(t, tarPath), "")
			wantAPIError(t, err, api.CodeLineage, tt.want)
		})
	}
	if h := head(t, e, "sha256"); h != v2 {
		t.Errorf("head moved to %s after refused registrations, want %s", h, v2)
	}

	// The same identity twice: exists.
	out, code := e.Ctl("cell", "register", v2cell)
	if code != exitFailure || !strings.Contains(out, "already registered") {
		t.Errorf("second register of v2: exit %d, output %q; want exit 1 and 'already registered'", code, out)
	}
	_, err := c.Register(ctx, mustOpen(t, v2cell), "")
	wantAPIError(t, err, api.CodeExists, v2)

	// lineage: text and --json.
	var lin api.Lineage
	decodeJSON(t, e.MustCtl("cell", "lineage", "sha256", "--json"), &lin)
	if len(lin.Entries) != 2 || lin.Entries[0].Identity != v1 || lin.Entries[1].Identity != v2 || lin.Entries[1].Parent != v1 || lin.Head != v2 || !lin.Entries[1].Head {
		t.Errorf("lineage --json = %+v", lin)
	}
	if out := e.MustCtl("cell", "lineage", "sha256"); !strings.Contains(out, v1) || !strings.Contains(out, v2) || !strings.Contains(out, "head") {
		t.Errorf("lineage:\n%s", out)
	}

	// A second name, for rollback across names.
	other := e.Register("cells/examples/json-query", nil)

	// rollback: to v1 moves the head; refusals name what is wrong.
	var moved api.HeadMoved
	decodeJSON(t, e.MustCtl("cell", "rollback", "sha256", v1, "--json"), &moved)
	if moved.From != v2 || moved.To != v1 {
		t.Errorf("rollback --json = %+v, want %s -> %s", moved, v2, v1)
	}
	if h := head(t, e, "sha256"); h != v1 {
		t.Errorf("head after rollback = %s, want %s", h, v1)
	}
	decodeJSON(t, e.MustCtl("cell", "lineage", "sha256", "--json"), &lin)
	if len(lin.Moves) != 1 || lin.Moves[0].Kind != "rollback" || lin.Moves[0].From != v2 || lin.Moves[0].To != v1 || len(lin.Entries) != 2 {
		t.Errorf("lineage after rollback: moves %+v, %d entries; want one rollback %s -> %s and history kept", lin.Moves, len(lin.Entries), v2, v1)
	}
	rollbacks := []struct {
		name, to string
		code     api.Code
		want     string
	}{
		{"to the head", v1, api.CodeLineage, "already the head"},
		{"to another name's identity", other, api.CodeLineage, `is a version of "json-query"`},
		{"to an unknown identity", "sha256:" + strings.Repeat("cd", 32), api.CodeNotFound, "not found"},
	}
	for _, tt := range rollbacks {
		t.Run("rollback "+tt.name, func(t *testing.T) {
			out, code := e.Ctl("cell", "rollback", "sha256", tt.to)
			if code != exitFailure || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, out, exitFailure, tt.want)
			}
			_, err := c.Rollback(ctx, "sha256", tt.to)
			wantAPIError(t, err, tt.code, tt.want)
		})
	}

	// revoke: a bare name is refused; an identity is revoked for ever.
	out, code = e.Ctl("cell", "revoke", "sha256")
	if code != exitFailure || !strings.Contains(out, "revoke takes an identity, not a name") || !strings.Contains(out, v1) {
		t.Errorf("revoke NAME: exit %d, output %q", code, out)
	}
	if h := head(t, e, "sha256"); h != v1 {
		t.Fatalf("revoke by name moved the head to %s", h)
	}
	e.MustCtl("cell", "revoke", v2)
	var rec api.Cell
	decodeJSON(t, e.MustCtl("cell", "inspect", v2, "--json"), &rec)
	if !rec.Revoked || rec.Head {
		t.Errorf("inspect revoked v2 = revoked %v head %v", rec.Revoked, rec.Head)
	}
	// ... it never runs (pinned), is never rolled back to, never registered again.
	stdout, stderr, code := e.CtlSplit(nil, "run", v2, "--input", `{"text":"abc"}`, "--json")
	o := parseOutcome(t, stdout)
	if code != exitCallFailed || o.Verdict != "refused" || !strings.Contains(o.Message, v2+" is revoked") {
		t.Errorf("run revoked v2: exit %d, verdict %s, message %q; stderr %q", code, o.Verdict, o.Message, stderr)
	}
	out, code = e.Ctl("cell", "rollback", "sha256", v2)
	if code != exitFailure || !strings.Contains(out, "revoked") {
		t.Errorf("rollback to revoked v2: exit %d, output %q", code, out)
	}
	_, err = c.Rollback(ctx, "sha256", v2)
	wantAPIError(t, err, api.CodeRevoked, "revoked")
	out, code = e.Ctl("cell", "register", v2cell)
	if code != exitFailure || !strings.Contains(out, "can never be registered again") {
		t.Errorf("re-register revoked v2: exit %d, output %q", code, out)
	}
	_, err = c.Register(ctx, mustOpen(t, v2cell), "")
	wantAPIError(t, err, api.CodeRevoked, "can never be registered again")
	out, code = e.Ctl("cell", "revoke", v2)
	if code != exitFailure || !strings.Contains(out, "already revoked") {
		t.Errorf("revoke twice: exit %d, output %q", code, out)
	}
	// The head still runs.
	if o := runCell(t, e, "sha256", `{"text":"abc"}`); o.Verdict != "ok" || o.Identity != v1 {
		t.Errorf("run sha256 after revoking v2: verdict %s identity %s, want ok %s", o.Verdict, o.Identity, v1)
	}
	// Revoking the head with no ancestor leaves the name without a head.
	var revoked api.HeadMoved
	decodeJSON(t, e.MustCtl("cell", "revoke", v1, "--json"), &revoked)
	if revoked.From != v1 || revoked.To != "" {
		t.Errorf("revoke head v1 = %+v, want head %s -> none", revoked, v1)
	}
	_, _, code = e.CtlSplit(nil, "run", "sha256", "--input", `{"text":"abc"}`)
	if code == 0 {
		t.Error("run sha256 with every version revoked exited 0")
	}
}

// TestCapsuleRefusals tampers with signed capsules in every way the brief
// names and checks that pack, verify and register refuse them with exit 4,
// naming the file, the key or the entry, and that the daemon refuses the
// same bytes uploaded directly (HTTP 422, code verification).
func TestCapsuleRefusals(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	if err := os.Mkdir(filepath.Join(e.Dir, "stranger"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, code := e.Ctl("key", "generate", "stranger", "--out", filepath.Join(e.Dir, "stranger")); code != 0 {
		t.Fatalf("key generate: %s", out)
	}
	strangerKey := filepath.Join(e.Dir, "stranger", "stranger.key")

	// signedDir packs and signs a directory capsule in place.
	signedDir := func(src string, key string) string {
		dir := e.Capsule(src, nil)
		e.MustCtl("cell", "pack", dir)
		e.MustCtl("cell", "sign", dir, "--key", key)
		return dir
	}
	flip := func(path string, at func(b []byte) int) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at(b)] ^= 0x01
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	middle := func(b []byte) int { return len(b) / 2 }

	tests := []struct {
		name string
		make func() string // a capsule path (dir or .cell)
		want []string      // in the refusal, from tccctl and from the daemon
	}{
		{"binary flipped", func() string {
			d := signedDir("cells/examples/sha256", e.Key)
			flip(filepath.Join(d, "sha256"), middle)
			return d
		}, []string{`"sha256"`, "digest"}},
		{"data file flipped (config-audit rules.json)", func() string {
			d := signedDir("cells/examples/config-audit", e.Key)
			flip(filepath.Join(d, "rules.json"), middle)
			return d
		}, []string{`"rules.json"`, "digest"}},
		{"cell.yaml flipped", func() string {
			d := signedDir("cells/examples/sha256", e.Key)
			flip(filepath.Join(d, "cell.yaml"), func(b []byte) int { return bytes.Index(b, []byte("SHA-256 digest")) + 4 })
			return d
		}, []string{"the manifest changed after signing"}},
		{"signed by a key not in the trust file", func() string {
			return signedDir("cells/examples/sha256", strangerKey)
		}, []string{"stranger"}},
		{"not signed", func() string {
			d := e.Capsule("cells/examples/sha256", nil)
			e.MustCtl("cell", "pack", d)
			return d
		}, []string{"not signed"}},
		{"listed file missing", func() string {
			d := signedDir("cells/examples/config-audit", e.Key)
			if err := os.Remove(filepath.Join(d, "rules.json")); err != nil {
				t.Fatal(err)
			}
			return d
		}, []string{`"rules.json"`}},
		{"unlisted file added", func() string {
			d := signedDir("cells/examples/sha256", e.Key)
			if err := os.WriteFile(filepath.Join(d, "extra.bin"), []byte("smuggled"), 0o644); err != nil {
				t.Fatal(err)
			}
			return d
		}, []string{`"extra.bin"`}},
		{"tar entry with ..", func() string {
			return craftTar(t, e.Signed("cells/examples/sha256", nil), tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}, "x")
		}, []string{`"../evil"`, "escapes the capsule"}},
		{"tar entry with an absolute path", func() string {
			return craftTar(t, e.Signed("cells/examples/sha256", nil), tar.Header{Name: "/etc/cron.d/evil", Typeflag: tar.TypeReg, Mode: 0o644}, "x")
		}, []string{`"/etc/cron.d/evil"`, "absolute path"}},
		{"tar entry that is a symlink", func() string {
			return craftTar(t, e.Signed("cells/examples/sha256", nil), tar.Header{Name: "shadow", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, "")
		}, []string{`"shadow"`, "symlink", "/etc/shadow"}},
		{"tar entry that is a hard link", func() string {
			return craftTar(t, e.Signed("cells/examples/sha256", nil), tar.Header{Name: "passwd", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, "")
		}, []string{`"passwd"`, "hard link"}},
	}
	before := ledgerSize(t, e)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			capsulePath := tt.make()
			check := func(what, out string, code int) {
				t.Helper()
				if code != exitVerification {
					t.Errorf("%s: exit %d, want %d (verification)\n%s", what, code, exitVerification, out)
				}
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: refusal %q does not say %q", what, strings.TrimSpace(out), w)
					}
				}
			}
			out, code := e.Ctl("cell", "verify", capsulePath, "--trust", e.Pub)
			check("cell verify", out, code)
			out, code = e.Ctl("cell", "register", capsulePath)
			check("cell register", out, code)

			// The daemon on its own: upload the bytes as they are, past
			// tccctl's local checks.
			status, ae := uploadRaw(t, e, rawTar(t, capsulePath))
			if status != http.StatusUnprocessableEntity || ae.Code != api.CodeVerification {
				t.Errorf("raw upload: HTTP %d code %q, want 422 %q (%s)", status, ae.Code, api.CodeVerification, ae.Message)
			}
			for _, w := range tt.want {
				if !strings.Contains(ae.Message, w) {
					t.Errorf("raw upload: refusal %q does not say %q", ae.Message, w)
				}
			}
		})
	}
	if after := ledgerSize(t, e); after != before {
		t.Errorf("refused registrations changed the ledger: %d events before, %d after", before, after)
	}
	if list, err := e.Client().Cells(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("cells after refusals: %v, %v; want none", list, err)
	}

	// pack refuses a manifest a flipped byte made invalid, naming the field.
	d := e.Capsule("cells/examples/sha256", func(y string) string {
		return strings.Replace(y, "\nentrypoint: sha256", "\nentrypoinu: sha256", 1)
	})
	out, code := e.Ctl("cell", "pack", d)
	if code != exitVerification || !strings.Contains(out, "cell.yaml") || !strings.Contains(out, "entrypoinu") {
		t.Errorf("pack of an invalid cell.yaml: exit %d, output %q; want exit 4 naming cell.yaml and the field", code, out)
	}
}

// Exit codes of tccctl (cmd/tccctl/main.go).
const (
	exitFailure      = 1
	exitVerification = 4
	exitForbidden    = 5
	exitCallFailed   = 6
)

// version returns a cell.yaml edit making a distinct version n of a cell
// with the given parent ("" for none).
func version(n int, parent string) func(string) string {
	return func(y string) string {
		y = strings.Replace(y, "\ndescription: >-\n", "\ndescription: >-\n  Version "+strconv.Itoa(n)+".\n", 1)
		if parent != "" {
			y += "\nparent: " + parent + "\n"
		}
		return y
	}
}

// head is the current head of name, as the daemon reports it.
func head(t *testing.T, e *Env, name string) string {
	t.Helper()
	list, err := e.Client().Cells(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Name == name {
			return c.Head
		}
	}
	return ""
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not the JSON expected (%v):\n%s", err, s)
	}
}

// wantAPIError checks an API error's code and that its message contains want.
func wantAPIError(t *testing.T, err error, code api.Code, want string) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Errorf("got error %v, want an API error with code %q", err, code)
		return
	}
	if ae.Code != code || !strings.Contains(ae.Message, want) {
		t.Errorf("API error %q: %q; want code %q and a message containing %q", ae.Code, ae.Message, code, want)
	}
}

// ledgerSize is the number of events in the daemon's ledger.
func ledgerSize(t *testing.T, e *Env) uint64 {
	t.Helper()
	s, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Ledger.Size
}

// craftTar copies the signed tar src with one extra hostile entry.
func craftTar(t *testing.T, src string, h tar.Header, body string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(mustRead(t, src)))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	h.Size = int64(len(body))
	if err := tw.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSuffix(src, ".cell") + "-crafted-" + randHex(3) + ".cell"
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawTar returns a capsule's bytes as a tar without checking anything: a
// .cell file as it is, a directory's regular files as flat entries.
func rawTar(t *testing.T, path string) []byte {
	t.Helper()
	if strings.HasSuffix(path, ".cell") {
		return mustRead(t, path)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	ents, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if !ent.Type().IsRegular() || strings.HasSuffix(ent.Name(), ".go") || ent.Name() == ".cellignore" {
			continue
		}
		info, _ := ent.Info()
		data := mustRead(t, filepath.Join(path, ent.Name()))
		if err := tw.WriteHeader(&tar.Header{Name: ent.Name(), Typeflag: tar.TypeReg, Mode: int64(info.Mode().Perm()), Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadRaw posts a capsule tar to the registration endpoint and returns
// the HTTP status and, for an error, its body.
func uploadRaw(t *testing.T, e *Env, body []byte) (int, api.Error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, api.BaseURL+"/v1/cells", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := e.Client().HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ae api.Error
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &ae)
	return resp.StatusCode, ae
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
