package capsule

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/internal/keys"
)

const testManifest = `# test cell
version: tcc/v1
name: sha256
description: Hashes its input.
entrypoint: sha256
limits: {memory: 16MiB, wall: 2s}
syscalls: {groups: ["@basic-io"]}
`

// newCellDir writes an unpacked capsule directory: cell.yaml, a fake
// binary and a data file.
func newCellDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cell")
	must(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "cell.yaml"), []byte(testManifest), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "sha256"), []byte("\x7fELF fake binary for tests\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "data", "rules.json"), []byte(`{"rules": []}`), 0o644))
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type testKey struct {
	signer note.Signer
	vkey   string
}

func newKey(t testing.TB, name string) testKey {
	t.Helper()
	dir := t.TempDir()
	keyPath, pubPath, err := keys.Generate(name, dir)
	must(t, err)
	s, err := keys.LoadSigner(keyPath)
	must(t, err)
	pub, err := os.ReadFile(pubPath)
	must(t, err)
	return testKey{signer: s, vkey: strings.TrimSpace(string(pub))}
}

// trustFile writes a trust file listing ks and loads it.
func trustFile(t testing.TB, ks ...testKey) (note.Verifiers, string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test trust\n")
	for _, k := range ks {
		b.WriteString(k.vkey + "\n")
	}
	p := filepath.Join(t.TempDir(), "trust")
	must(t, os.WriteFile(p, []byte(b.String()), 0o644))
	v, _, err := keys.LoadTrust(p)
	must(t, err)
	return v, p
}

// packAndSign packs dir and signs it with k.
func packAndSign(t testing.TB, dir string, k testKey) *Packed {
	t.Helper()
	p, err := Pack(dir)
	must(t, err)
	c, err := Open(dir)
	must(t, err)
	must(t, Sign(c, k.signer))
	return p
}

// toTar writes the capsule at src as a tar file (gzip-compressed if gz).
func toTar(t testing.TB, src string, gz bool) string {
	t.Helper()
	c, err := Open(src)
	must(t, err)
	var buf bytes.Buffer
	if gz {
		zw := gzip.NewWriter(&buf)
		must(t, WriteTar(c, zw))
		must(t, zw.Close())
	} else {
		must(t, WriteTar(c, &buf))
	}
	p := filepath.Join(t.TempDir(), "x.cell")
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestPackSignVerify(t *testing.T) {
	alice := newKey(t, "alice")
	trust, _ := trustFile(t, alice)
	dir := newCellDir(t)

	packed := packAndSign(t, dir, alice)
	if !packed.Rewrote || len(packed.Warnings) != 0 {
		t.Errorf("first pack: Rewrote %v, warnings %q", packed.Rewrote, packed.Warnings)
	}
	yaml, _ := os.ReadFile(filepath.Join(dir, "cell.yaml"))
	if !strings.HasPrefix(string(yaml), testManifest) || !strings.Contains(string(yaml), "files:\n  data/rules.json: sha256:") {
		t.Errorf("cell.yaml after pack:\n%s", yaml)
	}
	wantFiles := map[string]manifest.Digest{
		"sha256":          manifest.DigestOf([]byte("\x7fELF fake binary for tests\n")),
		"data/rules.json": manifest.DigestOf([]byte(`{"rules": []}`)),
	}
	if !reflect.DeepEqual(packed.Manifest.Files, wantFiles) {
		t.Errorf("files: got %v, want %v", packed.Manifest.Files, wantFiles)
	}

	for _, form := range []string{"dir", "tar", "tar.gz"} {
		t.Run(form, func(t *testing.T) {
			p := dir
			if form != "dir" {
				p = toTar(t, dir, form == "tar.gz")
			}
			c, err := Open(p)
			must(t, err)
			if got, want := c.Format().String(), map[string]string{"dir": "directory", "tar": "tar", "tar.gz": "tar.gz"}[form]; got != want {
				t.Errorf("Format: got %s, want %s", got, want)
			}
			v, err := Verify(c, trust)
			if err != nil {
				t.Fatal(err)
			}
			if v.Identity != packed.Identity || !reflect.DeepEqual(v.Signers, []string{"alice"}) {
				t.Errorf("Verified: identity %s signers %q, want %s [alice]", v.Identity, v.Signers, packed.Identity)
			}
			if !bytes.Equal(v.Raw, yaml) || !bytes.HasPrefix(v.Signature, []byte(SignatureDomain+"\n"+string(packed.Identity)+"\n\n— alice ")) {
				t.Errorf("Raw or Signature not as stored:\n%s", v.Signature)
			}
		})
	}

	// Packing again changes nothing and keeps the signature.
	again, err := Pack(dir)
	must(t, err)
	if again.Rewrote || len(again.Warnings) != 0 || again.Identity != packed.Identity {
		t.Errorf("second pack: %+v", again)
	}
	if _, err := os.Stat(filepath.Join(dir, "cell.sig")); err != nil {
		t.Errorf("second pack removed a valid cell.sig: %v", err)
	}
}

func TestFilesAndWriteTar(t *testing.T) {
	dir := newCellDir(t)
	packAndSign(t, dir, newKey(t, "alice"))
	c, err := Open(dir)
	must(t, err)

	files := c.Files()
	var got []string
	for _, f := range files {
		b, _ := io.ReadAll(f.Open())
		if manifest.DigestOf(b) != f.Digest || int64(len(b)) != f.Size {
			t.Errorf("%s: content does not match digest or size", f.Path)
		}
		got = append(got, f.Path+" "+f.Mode.String())
	}
	if want := []string{"data/rules.json -rw-r--r--", "sha256 -rwxr-xr-x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Files: got %q, want %q", got, want)
	}

	var a, b bytes.Buffer
	must(t, WriteTar(c, &a))
	c2, err := Open(toTar(t, dir, true))
	must(t, err)
	must(t, WriteTar(c2, &b))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("WriteTar is not deterministic across a round trip")
	}
	tr := tar.NewReader(&a)
	var entries []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.Typeflag != tar.TypeReg {
			t.Errorf("%s: header %+v is not normalized", h.Name, h)
		}
		entries = append(entries, h.Name+" "+os.FileMode(h.Mode).String())
	}
	want := []string{"cell.sig -rw-r--r--", "cell.yaml -rw-r--r--", "data/rules.json -rw-r--r--", "sha256 -rwxr-xr-x"}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("tar entries: got %q, want %q", entries, want)
	}
}

func TestTamper(t *testing.T) {
	alice := newKey(t, "alice")
	trust, _ := trustFile(t, alice)
	flip := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			must(t, err)
			i := bytes.IndexByte(b, 'H') // a letter in each file, so cell.yaml stays YAML
			if i < 0 {
				i = len(b) / 2
			}
			b[i] ^= 0x20
			must(t, os.WriteFile(p, b, 0o644))
		}
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		is     error
		file   string
		want   string
	}{
		{"binary byte", flip("sha256"), ErrDigestMismatch, "sha256",
			`file "sha256" does not match its digest in cell.yaml: want sha256:`},
		{"data byte", flip("data/rules.json"), ErrDigestMismatch, "data/rules.json",
			`file "data/rules.json" does not match its digest in cell.yaml`},
		{"cell.yaml byte", flip("cell.yaml"), ErrIdentityMismatch, "",
			"but the manifest's identity is sha256:"},
		{"removed file", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "data/rules.json"))) },
			ErrMissingFile, "data/rules.json", `missing file "data/rules.json" listed in cell.yaml`},
		{"unlisted file", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "extra.txt"), []byte("x"), 0o644))
		}, ErrUnlistedFile, "extra.txt", `file "extra.txt" is in the capsule but not in cell.yaml's files; run tccctl cell pack`},
		{"removed signature", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "cell.sig"))) },
			ErrNotSigned, "", "not signed (no cell.sig)"},
		{"broken manifest", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "cell.yaml"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.WriteString("phase: sometimes\n")
			f.Close()
		}, ErrInvalidManifest, "cell.yaml", `phase: "sometimes" is not a phase`},
	}
	for _, tt := range tests {
		for _, form := range []string{"dir", "tar", "tar.gz"} {
			t.Run(tt.name+"/"+form, func(t *testing.T) {
				dir := newCellDir(t)
				packAndSign(t, dir, alice)
				tt.tamper(t, dir)
				p := dir
				if form != "dir" {
					p = toTar(t, dir, form == "tar.gz")
				}
				c, err := Open(p)
				must(t, err)
				_, err = Verify(c, trust)
				checkErr(t, err, tt.is, tt.want)
				var e *Error
				if errors.As(err, &e) && (e.File != tt.file || e.Capsule != p) {
					t.Errorf("Error names file %q in %q, want %q in %q", e.File, e.Capsule, tt.file, p)
				}
			})
		}
	}
}

func checkErr(t *testing.T, err, is error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v: %q", is, want)
	}
	if !errors.Is(err, is) {
		t.Errorf("error %q is not %v", err, is)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestSignatures(t *testing.T) {
	alice, bob, mallory := newKey(t, "alice"), newKey(t, "alice2"), newKey(t, "mallory")
	trust, trustPath := trustFile(t, alice, bob)

	signed := func(t *testing.T, ks ...testKey) string {
		dir := newCellDir(t)
		_, err := Pack(dir)
		must(t, err)
		for _, k := range ks {
			c, err := Open(dir)
			must(t, err)
			must(t, Sign(c, k.signer))
		}
		return dir
	}
	verify := func(t *testing.T, dir string) (*Verified, error) {
		c, err := Open(dir)
		must(t, err)
		return Verify(c, trust)
	}
	writeSig := func(t *testing.T, dir string, text string, k testKey) {
		msg, err := note.Sign(&note.Note{Text: text}, k.signer)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, "cell.sig"), msg, 0o644))
	}

	t.Run("unknown signer", func(t *testing.T) {
		_, err := verify(t, signed(t, mallory))
		checkErr(t, err, ErrUntrustedSigner, `signed by "mallory" (key `)
		checkErr(t, err, ErrUntrustedSigner, "which is not in the trust file "+trustPath)
		var e *Error
		if errors.As(err, &e) && e.Key != "mallory" {
			t.Errorf("Key: got %q, want mallory", e.Key)
		}
	})
	t.Run("trusted and untrusted signers", func(t *testing.T) {
		v, err := verify(t, signed(t, mallory, alice))
		must(t, err)
		if !reflect.DeepEqual(v.Signers, []string{"alice"}) {
			t.Errorf("Signers: got %q, want [alice]", v.Signers)
		}
	})
	t.Run("two trusted signers, re-signing replaces", func(t *testing.T) {
		dir := signed(t, alice, bob, alice)
		v, err := verify(t, dir)
		must(t, err)
		if !reflect.DeepEqual(v.Signers, []string{"alice2", "alice"}) {
			t.Errorf("Signers: got %q, want [alice2 alice]", v.Signers)
		}
		if n := bytes.Count(v.Signature, []byte("\n— ")); n != 2 {
			t.Errorf("cell.sig has %d signature lines, want 2:\n%s", n, v.Signature)
		}
	})
	t.Run("signature over another identity", func(t *testing.T) {
		dir := signed(t)
		c, err := Open(dir)
		must(t, err)
		m, err := c.Manifest()
		must(t, err)
		other := "sha256:" + strings.Repeat("ab", 32)
		writeSig(t, dir, SignedText(manifest.Identity(other)), alice)
		_, err = verify(t, dir)
		checkErr(t, err, ErrIdentityMismatch, "signature is for "+other+" but the manifest's identity is "+string(m.Identity())+"; the manifest changed after signing")
	})
	t.Run("checkpoint domain", func(t *testing.T) {
		dir := signed(t)
		writeSig(t, dir, "tcc.example/ledger\n42\nqINS1GRFhWHwdkUeqLEoP4Bh9sQWX7WZKrIQqc1tbRk=\n", alice)
		_, err := verify(t, dir)
		checkErr(t, err, ErrWrongDomain, `cell.sig is signed by "alice" but is not a cell signature (its text starts "tcc.example/ledger"`)
	})
	t.Run("domain with extra lines", func(t *testing.T) {
		dir := signed(t)
		c, _ := Open(dir)
		m, _ := c.Manifest()
		writeSig(t, dir, SignedText(m.Identity())+"and more\n", alice)
		_, err := verify(t, dir)
		checkErr(t, err, ErrBadSignature, "its text is not")
	})
	t.Run("altered signed text", func(t *testing.T) {
		dir := signed(t, alice)
		p := filepath.Join(dir, "cell.sig")
		b, _ := os.ReadFile(p)
		i := len(SignatureDomain) + len("\nsha256:")
		b[i] ^= 1 // still hex: one identity digit changes
		must(t, os.WriteFile(p, b, 0o644))
		_, err := verify(t, dir)
		checkErr(t, err, ErrBadSignature, `the signature by "alice" in cell.sig does not verify`)
	})
	t.Run("not a note", func(t *testing.T) {
		dir := signed(t)
		must(t, os.WriteFile(filepath.Join(dir, "cell.sig"), []byte("hello\n"), 0o644))
		_, err := verify(t, dir)
		checkErr(t, err, ErrBadSignature, "cell.sig is not a signed note")
	})
	t.Run("not signed", func(t *testing.T) {
		_, err := verify(t, signed(t))
		checkErr(t, err, ErrNotSigned, "run tccctl cell sign")
	})
	t.Run("sign refuses a tampered capsule", func(t *testing.T) {
		dir := signed(t)
		must(t, os.WriteFile(filepath.Join(dir, "sha256"), []byte("other"), 0o755))
		c, err := Open(dir)
		must(t, err)
		checkErr(t, Sign(c, alice.signer), ErrDigestMismatch, `file "sha256" does not match`)
		if _, err := os.Stat(filepath.Join(dir, "cell.sig")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Sign wrote cell.sig for a tampered capsule: %v", err)
		}
	})
}

func TestSignTar(t *testing.T) {
	alice, bob := newKey(t, "alice"), newKey(t, "bob")
	trust, _ := trustFile(t, alice, bob)
	for _, gz := range []bool{false, true} {
		dir := newCellDir(t)
		_, err := Pack(dir)
		must(t, err)
		p := toTar(t, dir, gz)
		for _, k := range []testKey{alice, bob} {
			c, err := Open(p)
			must(t, err)
			must(t, Sign(c, k.signer))
		}
		c, err := Open(p)
		must(t, err)
		if (c.Format() == FormatTarGzip) != gz {
			t.Errorf("gzip %v: format became %s", gz, c.Format())
		}
		v, err := Verify(c, trust)
		must(t, err)
		if !reflect.DeepEqual(v.Signers, []string{"alice", "bob"}) {
			t.Errorf("Signers: %q", v.Signers)
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".tcc-*"))
		if len(leftovers) != 0 {
			t.Errorf("temporary files left: %q", leftovers)
		}
	}
}

func TestPackRemovesStaleSignature(t *testing.T) {
	dir := newCellDir(t)
	old := packAndSign(t, dir, newKey(t, "alice"))
	must(t, os.WriteFile(filepath.Join(dir, "data", "rules.json"), []byte(`{"rules": [1]}`), 0o644))
	p, err := Pack(dir)
	must(t, err)
	if !p.Rewrote || p.Identity == old.Identity {
		t.Errorf("pack after a change: %+v", p)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "removed cell.sig: it signed "+old.Identity.Short()) ||
		!strings.Contains(p.Warnings[0], "the signature no longer matches") {
		t.Errorf("warnings: %q", p.Warnings)
	}
	if _, err := os.Stat(filepath.Join(dir, "cell.sig")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cell.sig still there: %v", err)
	}
}

func TestPackErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		is    error
		want  string
	}{
		{"not executable", func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "sha256"), 0o644)) },
			ErrNotExecutable, `entrypoint "sha256" is not executable; chmod +x`},
		{"no entrypoint", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "sha256"))) },
			ErrMissingFile, `entrypoint "sha256" is not in the capsule; build it first`},
		{"invalid manifest", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "cell.yaml"), []byte(testManifest+"limits2: {}\n"), 0o644))
		}, ErrInvalidManifest, "limits2: unknown field"},
		{"no manifest", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "cell.yaml"))) },
			ErrMissingFile, "no cell.yaml at the root"},
		{"symlink", func(t *testing.T, dir string) { must(t, os.Symlink("sha256", filepath.Join(dir, "data", "link"))) },
			ErrUnsafePath, `"data/link" is a symlink`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newCellDir(t)
			tt.setup(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, "cell.yaml"))
			_, err := Pack(dir)
			checkErr(t, err, tt.is, tt.want)
			if after, _ := os.ReadFile(filepath.Join(dir, "cell.yaml")); !bytes.Equal(before, after) {
				t.Error("a failed Pack changed cell.yaml")
			}
		})
	}
	var fe *manifest.FieldError
	dir := newCellDir(t)
	must(t, os.WriteFile(filepath.Join(dir, "cell.yaml"), []byte(testManifest+"phase: x\n"), 0o644))
	if _, err := Pack(dir); !errors.As(err, &fe) || fe.Path != "phase" {
		t.Errorf("errors.As(*manifest.FieldError): got %v", err)
	}
	tarPath := toTar(t, newCellDir(t), false)
	if _, err := Pack(tarPath); !errors.Is(err, ErrNotCapsule) {
		t.Errorf("Pack(tar): got %v, want ErrNotCapsule", err)
	}
}

func TestInspect(t *testing.T) {
	alice := newKey(t, "alice")
	trust, _ := trustFile(t, alice)
	dir := newCellDir(t)
	packed := packAndSign(t, dir, alice)
	c, err := Open(dir)
	must(t, err)

	s, err := Inspect(c, trust)
	must(t, err)
	if !s.Verified || s.Identity != packed.Identity || !reflect.DeepEqual(s.Signers, []string{"alice"}) || s.Problem != "" {
		t.Errorf("summary: %+v", s)
	}
	b, err := json.Marshal(s)
	must(t, err)
	for _, want := range []string{`"memory":"16MiB"`, `"wall":"2s"`, `"cpu":1`, `"stderr":"64KiB"`, `"examples":0`,
		`{"path":"sha256","size":27,"digest":"sha256:`, `"mode":"-rwxr-xr-x","listed":true}`, `"groups":["@basic-io"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}

	other, _ := trustFile(t, newKey(t, "bob"))
	s, err = Inspect(c, other)
	must(t, err)
	if s.Verified || !reflect.DeepEqual(s.Signers, []string{"alice"}) || !strings.HasPrefix(s.Problem, `signed by "alice"`) {
		t.Errorf("untrusted summary: verified %v signers %q problem %q", s.Verified, s.Signers, s.Problem)
	}
	if s, err := Inspect(c, nil); err != nil || s.Verified || s.Problem == "" {
		t.Errorf("Inspect without trust: %+v %v", s, err)
	}
}

// tarEntry is one entry of a crafted tar.
type tarEntry struct {
	h    tar.Header
	body string
}

func reg(name, body string) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}

func craftTar(t *testing.T, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		must(t, tw.WriteHeader(&h))
		if e.body != "" {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	p := filepath.Join(t.TempDir(), "crafted.cell")
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestOpenRefusesTar(t *testing.T) {
	yaml := reg("cell.yaml", testManifest)
	many := []tarEntry{yaml}
	for i := range MaxEntries {
		many = append(many, reg("f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"/"+string(rune('a'+i/26%26))+string(rune('a'+i/676)), ""))
	}
	tests := []struct {
		name    string
		entries []tarEntry
		is      error
		want    string
	}{
		{"dot-dot", []tarEntry{yaml, reg("../x", "x")}, ErrUnsafePath, `"../x" escapes the capsule`},
		{"dot-dot inside", []tarEntry{yaml, reg("a/../../b", "x")}, ErrUnsafePath, `"a/../../b" escapes the capsule`},
		{"absolute", []tarEntry{yaml, reg("/etc/passwd", "x")}, ErrUnsafePath, `"/etc/passwd" is an absolute path`},
		{"unclean", []tarEntry{yaml, reg("a//b", "x")}, ErrUnsafePath, `"a//b" is not a clean path`},
		{"symlink", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeSymlink, Name: "sha256", Linkname: "/bin/sh"}}}, ErrUnsafePath, `"sha256" is a symlink (to "/bin/sh")`},
		{"hard link", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeLink, Name: "sha256", Linkname: "cell.yaml"}}}, ErrUnsafePath, `"sha256" is a hard link`},
		{"device", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}}}, ErrUnsafePath, `"dev/null" is a device`},
		{"fifo", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}}}, ErrUnsafePath, `"pipe" is a fifo`},
		{"duplicate", []tarEntry{yaml, reg("sha256", "a"), reg("./sha256", "b")}, ErrUnsafePath, `"sha256" appears twice`},
		{"duplicate manifest", []tarEntry{yaml, reg("cell.yaml", "name: x\n")}, ErrUnsafePath, `"cell.yaml" appears twice`},
		{"file and directory", []tarEntry{yaml, reg("data", "a"), reg("data/x", "b")}, ErrUnsafePath, `"data" is both a file and a directory`},
		{"directory then file", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755}}, reg("data", "a")}, ErrUnsafePath, `"data" is both a file and a directory`},
		{"too many entries", many, ErrTooLarge, "more than 4096 entries"},
		{"too large", []tarEntry{yaml, {h: tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: MaxTotalSize + 1}}}, ErrTooLarge, `"big" takes the capsule over 256MiB`},
		{"no manifest", []tarEntry{reg("sha256", "x")}, ErrMissingFile, "no cell.yaml at the root"},
		{"empty", nil, ErrNotCapsule, "empty tar archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p string
			if tt.name == "too large" {
				p = hugeHeaderTar(t)
			} else {
				p = craftTar(t, tt.entries...)
			}
			_, err := Open(p)
			checkErr(t, err, tt.is, tt.want)
		})
	}

	notTar := filepath.Join(t.TempDir(), "x.cell")
	must(t, os.WriteFile(notTar, []byte("this is not a tar file at all, just some text that is long enough"), 0o644))
	_, err := Open(notTar)
	checkErr(t, err, ErrNotCapsule, "not a directory or a tar archive")
}

// hugeHeaderTar is a tar whose second entry claims more than MaxTotalSize
// bytes but holds none: Open must refuse it from the header alone.
func hugeHeaderTar(t *testing.T) string {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "cell.yaml", Mode: 0o644, Size: int64(len(testManifest))}))
	tw.Write([]byte(testManifest))
	must(t, tw.Flush())
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: MaxTotalSize + 1}))
	// No body and no Close: the archive is truncated after the header.
	p := filepath.Join(t.TempDir(), "huge.cell")
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestOpenRefusesDir(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		is    error
		want  string
	}{
		{"symlink to a file inside", func(t *testing.T, dir string) {
			must(t, os.Symlink("rules.json", filepath.Join(dir, "data", "alias.json")))
		},
			ErrUnsafePath, `"data/alias.json" is a symlink`},
		{"symlink to a directory", func(t *testing.T, dir string) { must(t, os.Symlink("/etc", filepath.Join(dir, "etc"))) },
			ErrUnsafePath, `"etc" is a symlink`},
		{"symlinked manifest", func(t *testing.T, dir string) {
			must(t, os.Rename(filepath.Join(dir, "cell.yaml"), filepath.Join(dir, "real.yaml")))
			must(t, os.Symlink("real.yaml", filepath.Join(dir, "cell.yaml")))
		}, ErrUnsafePath, `"cell.yaml" is a symlink`},
		{"fifo", func(t *testing.T, dir string) {
			if err := exec.Command("mkfifo", filepath.Join(dir, "pipe")).Run(); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, ErrUnsafePath, `"pipe" is a fifo`},
		{"too large", func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, "sparse"))
			must(t, err)
			must(t, f.Truncate(MaxTotalSize+1))
			f.Close()
		}, ErrTooLarge, `"sparse" takes the capsule over 256MiB`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newCellDir(t)
			tt.setup(t, dir)
			_, err := Open(dir)
			checkErr(t, err, tt.is, tt.want)
		})
	}

	// The capsule root itself may be reached through a symlink.
	dir := newCellDir(t)
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(dir, link))
	if _, err := Open(link); err != nil {
		t.Errorf("Open through a symlinked root: %v", err)
	}
}
