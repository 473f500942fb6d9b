package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
)

func TestObjects(t *testing.T) {
	l := openTest(t, Options{})
	content := bytes.Repeat([]byte("cell binary "), 10000)
	sum := sha256.Sum256(content)
	want := manifest.Digest("sha256:" + hex.EncodeToString(sum[:]))

	d, n, err := l.PutObject(bytes.NewReader(content))
	if err != nil || d != want || n != int64(len(content)) {
		t.Fatalf("PutObject = %s, %d, %v; want %s, %d", d, n, err, want, len(content))
	}
	path, err := l.ObjectPath(d)
	if err != nil {
		t.Fatal(err)
	}
	h := string(want)[7:]
	if wantPath := filepath.Join(l.Dir(), "objects", "sha256", h[:2], h[2:]); path != wantPath {
		t.Errorf("ObjectPath = %s, want %s", path, wantPath)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("object mode %v, %v; want 0555", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("fan-out dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	if err := l.CheckObject(d); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if d2, _, err := l.PutObject(bytes.NewReader(content)); err != nil || d2 != d {
		t.Fatalf("second PutObject = %s, %v", d2, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(l.Dir(), "objects", "tmp")); len(ents) != 0 {
		t.Errorf("%d temporary files left", len(ents))
	}
	// Empty content is an object too.
	if _, _, err := l.PutObject(strings.NewReader("")); err != nil {
		t.Fatal(err)
	}

	// Corruption of the same size is found by CheckObject and named.
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(content)
	bad[0] ^= 1
	if err := os.WriteFile(path, bad, 0o755); err != nil {
		t.Fatal(err)
	}
	err = l.CheckObject(d)
	var oe *ObjectError
	if !errors.Is(err, ErrObjectCorrupt) || !errors.As(err, &oe) || oe.Digest != d || !strings.Contains(err.Error(), string(d)) {
		t.Fatalf("CheckObject of a corrupt object: %v", err)
	}
	// The next PutObject of the content repairs a damaged object, of the
	// same size or not.
	for _, damaged := range [][]byte{bad, content[:10]} {
		if err := os.WriteFile(path, damaged, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.PutObject(bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if err := l.CheckObject(d); err != nil {
			t.Errorf("after repairing %d damaged bytes: %v", len(damaged), err)
		}
	}

	missing := manifest.Digest("sha256:" + strings.Repeat("0", 64))
	if err := l.CheckObject(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckObject(missing) = %v, want ErrNotFound", err)
	}
	for _, bad := range []manifest.Digest{"", "sha256:../../etc/passwd", manifest.Digest("sha256:" + strings.Repeat("A", 64)), "md5:00"} {
		if _, err := l.ObjectPath(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ObjectPath(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
