package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

const testOrigin = "tcc.test/ledger"

// testKey is derived from a fixed seed so that child processes of the
// crash test sign with the same key.
var testKey = sync.OnceValues(func() (string, string) {
	skey, vkey, err := note.GenerateKey(rand.NewChaCha8([32]byte{'t', 'c', 'c'}), testOrigin)
	if err != nil {
		panic(err)
	}
	return skey, vkey
})

func testSigner(t testing.TB) note.Signer {
	t.Helper()
	skey, _ := testKey()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testVerifier(t testing.TB) note.Verifier {
	t.Helper()
	_, vkey := testKey()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testVerifiers(t testing.TB) note.Verifiers { return note.VerifierList(testVerifier(t)) }

func testOptions(t testing.TB, dir string) Options {
	return Options{Dir: dir, Signer: testSigner(t), Verifier: testVerifier(t), Origin: testOrigin}
}

func openTest(t testing.TB, opts Options) *Ledger {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Signer == nil {
		opts.Signer, opts.Verifier = testSigner(t), testVerifier(t)
	}
	l, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && err != ErrClosed {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// ident makes a deterministic identity from a label.
func ident(label string) manifest.Identity {
	h := sha256.Sum256([]byte(label))
	return manifest.Identity("sha256:" + hex.EncodeToString(h[:]))
}

// identHex makes an identity with the given leading hex digits.
func identHex(prefix string, label string) manifest.Identity {
	h := sha256.Sum256([]byte(label))
	s := prefix + hex.EncodeToString(h[:])
	return manifest.Identity("sha256:" + s[:64])
}

func record(name string, id manifest.Identity) CellRecord {
	return CellRecord{
		Identity:  id,
		Name:      name,
		Manifest:  []byte(fmt.Sprintf(`{"name":%q}`, name)),
		Signature: []byte("sig"),
		Signers:   []string{"tcc.test/signer"},
	}
}
