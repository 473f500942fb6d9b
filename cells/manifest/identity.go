package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

const (
	digestPrefix = "sha256:"
	hexLen       = 2 * sha256.Size

	// MinPrefix is the fewest hex digits accepted as an identity prefix.
	MinPrefix = 4
)

// ErrBadDigest is returned for a malformed identity or digest.
var ErrBadDigest = errors.New(`want "sha256:" and 64 lower-case hex digits`)

// ParseIdentity checks that s is "sha256:" followed by 64 lower-case hex digits.
func ParseIdentity(s string) (Identity, error) {
	if !isDigest(s) {
		return "", fmt.Errorf("identity %q: %w", truncate(s, 80), ErrBadDigest)
	}
	return Identity(s), nil
}

// ParseDigest checks that s is "sha256:" followed by 64 lower-case hex digits.
func ParseDigest(s string) (Digest, error) {
	if !isDigest(s) {
		return "", fmt.Errorf("digest %q: %w", truncate(s, 80), ErrBadDigest)
	}
	return Digest(s), nil
}

func isDigest(s string) bool {
	h, ok := strings.CutPrefix(s, digestPrefix)
	return ok && len(h) == hexLen && isLowerHex(h)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Hex is the identity without its "sha256:" prefix.
func (id Identity) Hex() string { return strings.TrimPrefix(string(id), digestPrefix) }

// Short is the identity cut to 12 hex digits, "sha256:abcdef012345", for
// display. It is not unique enough to name a cell in an API.
func (id Identity) Short() string {
	h := id.Hex()
	if len(h) > 12 {
		h = h[:12]
	}
	return digestPrefix + h
}

func (id Identity) String() string { return string(id) }

// HasPrefix reports whether p, "sha256:ab12…" or bare hex "ab12…", of at
// least MinPrefix hex digits, is a prefix of id. Upper-case hex is accepted.
func (id Identity) HasPrefix(p string) bool {
	h, err := normalizePrefix(p)
	return err == nil && strings.HasPrefix(id.Hex(), h)
}

// CheckPrefix explains why p cannot be used as an identity prefix, or
// returns nil if it can. Use it to word the error before searching.
func CheckPrefix(p string) error {
	_, err := normalizePrefix(p)
	return err
}

func normalizePrefix(p string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(p, digestPrefix))
	switch {
	case len(h) < MinPrefix:
		return "", fmt.Errorf("identity prefix %q is too short: give at least %d hex digits", truncate(p, 80), MinPrefix)
	case len(h) > hexLen || !isLowerHex(h):
		return "", fmt.Errorf("identity prefix %q: want \"sha256:\" and up to 64 hex digits", truncate(p, 80))
	}
	return h, nil
}

func (d Digest) String() string { return string(d) }

// Short abbreviates the digest for messages, as Identity.Short does.
func (d Digest) Short() string { return Identity(d).Short() }

// Hex is the digest without its "sha256:" prefix.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), digestPrefix) }

// DigestOf returns the digest of b.
func DigestOf(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest(digestPrefix + hex.EncodeToString(sum[:]))
}

// DigestReader returns the digest of everything r yields and its length.
func DigestReader(r io.Reader) (Digest, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return digestFromHash(h), n, nil
}

func digestFromHash(h hash.Hash) Digest {
	return Digest(digestPrefix + hex.EncodeToString(h.Sum(nil)))
}

// Identity is "sha256:" and the hex SHA-256 of Canonical.
func (m *Manifest) Identity() Identity {
	return Identity(DigestOf(m.Canonical()))
}

// Canonical is the deterministic JSON of the manifest: fields in declared
// order, map keys sorted, sizes in bytes, durations in nanoseconds, schemas
// and example values with sorted keys and no insignificant space. It is
// what the identity hashes, so it is only meaningful for a manifest returned
// by Parse (which fills every default); Parse(m.Canonical()) yields m again.
func (m *Manifest) Canonical() []byte {
	c := *m
	// A hand-built manifest may hold nil where Parse puts an empty value;
	// encode both the same so the identity does not depend on it.
	c.Args = orEmpty(c.Args)
	c.Syscalls.Groups = orEmpty(c.Syscalls.Groups)
	c.Syscalls.Extra = orEmpty(c.Syscalls.Extra)
	c.Filesystem.Devices = orEmpty(c.Filesystem.Devices)
	c.Nondeterminism = orEmpty(c.Nondeterminism)
	c.Examples = orEmpty(c.Examples)
	if c.Files == nil {
		c.Files = map[string]Digest{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		// Only invalid raw JSON in a hand-built manifest can get here.
		panic("manifest: Canonical of a manifest that did not come from Parse: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
