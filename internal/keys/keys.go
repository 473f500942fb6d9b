package keys

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

const (
	// KeySuffix and PubSuffix name the files Generate writes.
	KeySuffix = ".key"
	PubSuffix = ".pub"

	// maxKeyFile bounds what is read from a key or trust file.
	maxKeyFile   = 1 << 10
	maxTrustFile = 1 << 20

	signerPrefix = "PRIVATE+KEY+"
	algEd25519   = 1 // the note format's algorithm byte for Ed25519
)

var (
	// ErrBadName: a key name the note format or a file name cannot carry.
	ErrBadName = errors.New("invalid key name")
	// ErrKeyExists: Generate would overwrite a key file.
	ErrKeyExists = errors.New("key file already exists")
	// ErrKeyPermissions: a signer key file is readable by group or others.
	ErrKeyPermissions = errors.New("signer key file is readable by group or others")
	// ErrBadKey: the file does not hold the expected kind of key.
	ErrBadKey = errors.New("not a valid key")
	// ErrNoKeys: the trust file lists no key.
	ErrNoKeys = errors.New("trust file lists no keys")
)

// CheckName reports whether name can be a key name: the note rules
// (non-empty UTF-8, no spaces, no "+") and, because Generate uses it as a
// file name, no "/", no control characters and no leading ".".
func CheckName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadName, name, why) }
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrBadName)
	case len(name) > 128:
		return bad("longer than 128 bytes")
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.IndexFunc(name, unicode.IsSpace) >= 0:
		return bad("contains a space")
	case strings.Contains(name, "+"):
		return bad(`contains "+" (the note format uses it as a separator)`)
	case strings.Contains(name, "/"):
		return bad(`contains "/" (the name is also a file name)`)
	case strings.HasPrefix(name, "."):
		return bad(`starts with "."`)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return bad("contains a control character")
	}
	return nil
}

// Generate creates a new Ed25519 key pair named name in dir: NAME.key (the
// signer key, mode 0600) and NAME.pub (the verifier key and a newline,
// mode 0644). It refuses to overwrite either file.
func Generate(name, dir string) (keyPath, pubPath string, err error) {
	if err := CheckName(name); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	keyPath = filepath.Join(dir, name+KeySuffix)
	pubPath = filepath.Join(dir, name+PubSuffix)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("generate key: %s: %w; remove it first or choose another name", p, ErrKeyExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("generate key: %w", err)
		}
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	if err := writeNew(keyPath, skey+"\n", 0o600); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	if err := writeNew(pubPath, vkey+"\n", 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return keyPath, pubPath, nil
}

// writeNew creates path (failing if it exists) with exactly mode perm.
func writeNew(path, content string, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrKeyExists)
		}
		return err
	}
	// The umask may have cleared bits of perm; set them as documented.
	err = f.Chmod(perm)
	if _, werr := f.WriteString(content); err == nil {
		err = werr
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// LoadSigner reads a signer key file. It refuses a file that group or
// others may read or write.
func LoadSigner(path string) (note.Signer, error) {
	k, err := LoadSignerKey(path)
	if err != nil {
		return nil, err
	}
	return k.Signer, nil
}

// SignerKey is a signer key with the verifier of its signatures, derived
// from the secret key itself (no .pub file is consulted).
type SignerKey struct {
	Signer   note.Signer
	Verifier note.Verifier
	// Public is the verifier key, NAME+HASH+KEY: the line of the .pub file.
	Public string
}

// LoadSignerKey reads a signer key file as LoadSigner does and derives its
// verifier.
func LoadSignerKey(path string) (*SignerKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load signer key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load signer key: %s has mode %04o: %w; run chmod 600 %s", path, perm, ErrKeyPermissions, path)
	}
	b, err := readSmall(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load signer key: %w", err)
	}
	line := string(bytes.TrimSpace(b))
	if !strings.HasPrefix(line, signerPrefix) {
		if _, verr := note.NewVerifier(line); verr == nil {
			return nil, fmt.Errorf("load signer key: %s: %w: it is a verifier (public) key; sign with the .key file", path, ErrBadKey)
		}
		return nil, fmt.Errorf("load signer key: %s: %w: want a PRIVATE+KEY+… line", path, ErrBadKey)
	}
	s, err := note.NewSigner(line)
	if err != nil {
		// note's error does not echo the key; keep it that way.
		return nil, fmt.Errorf("load signer key: %s: %w: %v", path, ErrBadKey, err)
	}
	pub, err := publicOf(line)
	if err != nil {
		return nil, fmt.Errorf("load signer key: %s: %w", path, err)
	}
	v, err := note.NewVerifier(pub)
	if err != nil || v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return nil, fmt.Errorf("load signer key: %s: %w: its verifier key cannot be derived", path, ErrBadKey)
	}
	return &SignerKey{Signer: s, Verifier: v, Public: pub}, nil
}

// publicOf derives the verifier key of a note signer key,
// PRIVATE+KEY+NAME+HASH+base64(alg ‖ Ed25519 seed), which note.NewSigner
// has already checked.
func publicOf(skey string) (string, error) {
	f := strings.SplitN(skey, "+", 5)
	if len(f) != 5 {
		return "", fmt.Errorf("%w: want PRIVATE+KEY+NAME+HASH+KEY", ErrBadKey)
	}
	k, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(k) != 1+ed25519.SeedSize || k[0] != algEd25519 {
		return "", fmt.Errorf("%w: not an Ed25519 note signer key", ErrBadKey)
	}
	return note.NewEd25519VerifierKey(f[2], ed25519.NewKeyFromSeed(k[1:]).Public().(ed25519.PublicKey))
}

// LoadVerifier reads a verifier key file (NAME.pub).
func LoadVerifier(path string) (note.Verifier, error) {
	b, err := readSmall(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load verifier key: %w", err)
	}
	v, err := parseVerifier(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("load verifier key: %s: %w", path, err)
	}
	return v, nil
}

func parseVerifier(line string) (note.Verifier, error) {
	if strings.HasPrefix(line, signerPrefix) {
		return nil, fmt.Errorf("%w: this is a secret signer key; use the .pub file and keep the .key private", ErrBadKey)
	}
	v, err := note.NewVerifier(line)
	if err != nil {
		return nil, fmt.Errorf("%w: want NAME+HASH+KEY as in a .pub file (%v)", ErrBadKey, err)
	}
	return v, nil
}

func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes; not a key file", path, limit)
	}
	return b, nil
}

// Trust is the parsed trust file. It is a note.Verifiers; Path and Names
// let callers say which file and keys were consulted.
type Trust struct {
	path  string
	names []string
	note.Verifiers
}

// Path is the trust file's path.
func (t *Trust) Path() string { return t.path }

// Names are the key names in the order of the file.
func (t *Trust) Names() []string { return append([]string(nil), t.names...) }

// LoadTrust reads a trust file: one verifier key per line; blank lines and
// lines starting with '#' are ignored. Errors name the line. The returned
// Verifiers is a *Trust. A file with no keys gives ErrNoKeys.
func LoadTrust(path string) (note.Verifiers, []string, error) {
	b, err := readSmall(path, maxTrustFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load trust file: %w", err)
	}
	t, err := parseTrust(path, b)
	if err != nil {
		return nil, nil, err
	}
	return t, t.Names(), nil
}

func parseTrust(path string, b []byte) (*Trust, error) {
	t := &Trust{path: path}
	var list []note.Verifier
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxTrustFile)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if first, dup := seen[line]; dup {
			return nil, fmt.Errorf("load trust file: %s:%d: the same key as line %d", path, lineNo, first)
		}
		seen[line] = lineNo
		v, err := parseVerifier(line)
		if err != nil {
			return nil, fmt.Errorf("load trust file: %s:%d: %w", path, lineNo, err)
		}
		list = append(list, v)
		t.names = append(t.names, v.Name())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load trust file: %s: %w", path, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("load trust file: %s: %w; add the .pub line of each key whose cells tccd may run", path, ErrNoKeys)
	}
	t.Verifiers = note.VerifierList(list...)
	return t, nil
}
