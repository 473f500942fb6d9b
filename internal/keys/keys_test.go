package keys

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestGenerateAndLoad(t *testing.T) {
	dir := t.TempDir()
	keyPath, pubPath, err := Generate("alice", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{keyPath, 0o600}, {pubPath, 0o644}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %04o, want %04o", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	if filepath.Base(keyPath) != "alice.key" || filepath.Base(pubPath) != "alice.pub" {
		t.Errorf("paths: %s %s", keyPath, pubPath)
	}
	pub, _ := os.ReadFile(pubPath)
	if !strings.HasPrefix(string(pub), "alice+") || !strings.HasSuffix(string(pub), "\n") || strings.Count(string(pub), "\n") != 1 {
		t.Errorf("pub file: %q", pub)
	}

	signer, err := LoadSigner(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := LoadVerifier(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if signer.Name() != "alice" || verifier.Name() != "alice" || signer.KeyHash() != verifier.KeyHash() {
		t.Errorf("names/hashes: %s %08x, %s %08x", signer.Name(), signer.KeyHash(), verifier.Name(), verifier.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(verifier)); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	// The verifier derived from the secret key is the .pub file's.
	sk, err := LoadSignerKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if sk.Public+"\n" != string(pub) {
		t.Errorf("derived verifier key %q, .pub holds %q", sk.Public, pub)
	}
	if _, err := note.Open(msg, note.VerifierList(sk.Verifier)); err != nil {
		t.Errorf("derived verifier: %v", err)
	}

	// No overwriting, of either file.
	if _, _, err := Generate("alice", dir); !errors.Is(err, ErrKeyExists) {
		t.Errorf("second Generate: got %v, want ErrKeyExists", err)
	}
	os.Remove(keyPath)
	if _, _, err := Generate("alice", dir); !errors.Is(err, ErrKeyExists) {
		t.Errorf("Generate with only the .pub left: got %v, want ErrKeyExists", err)
	}
	if after, _ := os.ReadFile(pubPath); string(after) != string(pub) {
		t.Error("Generate changed an existing .pub")
	}
}

func TestGenerateBadName(t *testing.T) {
	for _, name := range []string{"", "a b", "a+b", "a/b", ".hidden", "tab\there", "new\nline", strings.Repeat("x", 129)} {
		_, _, err := Generate(name, t.TempDir())
		if !errors.Is(err, ErrBadName) {
			t.Errorf("Generate(%q): got %v, want ErrBadName", name, err)
		}
	}
	for _, name := range []string{"alice", "tcc.example-ledger_1", "émile"} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
	}
}

func TestLoadSignerRefusesOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	keyPath, pubPath, err := Generate("bob", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSigner(keyPath)
		if !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), "chmod 600 "+keyPath) {
			t.Errorf("mode %04o: got %v, want ErrKeyPermissions saying chmod 600", mode, err)
		}
	}
	os.Chmod(keyPath, 0o400)
	if _, err := LoadSigner(keyPath); err != nil {
		t.Errorf("mode 0400: %v", err)
	}

	// The wrong kind of key, each way, with no secret in the message.
	os.Chmod(pubPath, 0o600)
	if _, err := LoadSigner(pubPath); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "verifier (public) key") {
		t.Errorf("LoadSigner(.pub): got %v", err)
	}
	_, err = LoadVerifier(keyPath)
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "secret signer key") {
		t.Errorf("LoadVerifier(.key): got %v", err)
	}
	secret, _ := os.ReadFile(keyPath)
	if err != nil && strings.Contains(err.Error(), strings.TrimSpace(string(secret))[len("PRIVATE+KEY+"):]) {
		t.Error("error message contains the secret key")
	}
}

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	var pubs []string
	for _, name := range []string{"alice", "bob"} {
		_, pub, err := Generate(name, dir)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(pub)
		pubs = append(pubs, strings.TrimSpace(string(b)))
	}
	skey, _, err := note.GenerateKey(randReader{}, "eve")
	if err != nil {
		t.Fatal(err)
	}

	write := func(content string) string {
		p := filepath.Join(t.TempDir(), "trust")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("# trusted cell signers\n\n" + pubs[0] + "\n   \n  # bob, indented comment\n  " + pubs[1] + "  \n")
	v, names, err := LoadTrust(good)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"alice", "bob"}) {
		t.Errorf("names: %q", names)
	}
	if tr, ok := v.(*Trust); !ok || tr.Path() != good {
		t.Errorf("Verifiers is %T, want *Trust with its path", v)
	}
	alice, _ := note.NewVerifier(pubs[0])
	if got, err := v.Verifier("alice", alice.KeyHash()); err != nil || got.Name() != "alice" {
		t.Errorf("Verifier(alice): %v, %v", got, err)
	}
	if _, err := v.Verifier("mallory", 1); err == nil {
		t.Error("Verifier(mallory) found a key")
	}

	tests := []struct {
		content string
		want    string
		is      error
	}{
		{"# nothing\n\n", "lists no keys", ErrNoKeys},
		{"", "lists no keys", ErrNoKeys},
		{pubs[0] + "\nnot a key\n", ":2: not a valid key", ErrBadKey},
		{"# c\n" + skey + "\n", ":2: not a valid key: this is a secret signer key", ErrBadKey},
		{pubs[0] + "\n" + pubs[1] + "\n" + pubs[0] + "\n", ":3: the same key as line 1", nil},
		{pubs[0] + " # trailing comment\n", ":1: not a valid key", ErrBadKey},
	}
	for _, tt := range tests {
		_, _, err := LoadTrust(write(tt.content))
		if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("LoadTrust(%q): got %v, want %q", tt.content, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE") {
			t.Errorf("error shows a secret key: %v", err)
		}
	}
	if _, _, err := LoadTrust(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
}

// randReader is a deterministic stand-in for crypto/rand in tests.
type randReader struct{}

func (randReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(i)
	}
	return len(b), nil
}
