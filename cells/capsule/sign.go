package capsule

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

// SignatureDomain is the first line of every cell signature's text.
const SignatureDomain = "tcc cell signature v1"

// SignedText is the exact text a cell signature signs for id.
func SignedText(id manifest.Identity) string {
	return SignatureDomain + "\n" + string(id) + "\n"
}

// Verified is a capsule that passed Verify.
type Verified struct {
	Identity  manifest.Identity
	Manifest  *manifest.Manifest
	Signers   []string // names of the trusted keys that signed it
	Raw       []byte   // cell.yaml as stored
	Signature []byte   // cell.sig as stored
}

// Verify checks the capsule against its manifest and its signature against
// trust. It returns the first problem found, as an *Error wrapping one of
// ErrInvalidManifest, ErrMissingFile, ErrDigestMismatch, ErrUnlistedFile,
// ErrNotSigned, ErrUntrustedSigner, ErrBadSignature, ErrWrongDomain or
// ErrIdentityMismatch.
//
// When trust also has a Path() string method (keys.LoadTrust's value does),
// an untrusted signer's error names the trust file.
func Verify(c *Capsule, trust note.Verifiers) (*Verified, error) {
	m, err := c.checkContents()
	if err != nil {
		return nil, err
	}
	id := m.Identity()
	signers, err := verifySignature(c.path, c.sig, id, trust)
	if err != nil {
		return nil, err
	}
	return &Verified{Identity: id, Manifest: m, Signers: signers, Raw: c.raw, Signature: c.sig}, nil
}

// checkContents checks everything but the signature: the manifest parses,
// lists exactly the capsule's files with their digests, and lists the
// entrypoint.
func (c *Capsule) checkContents() (*manifest.Manifest, error) {
	m, err := c.Manifest()
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(m.Files)) {
		e, ok := c.files[p]
		if !ok {
			return nil, fileError(c.path, p, ErrMissingFile, "missing file %q listed in %s", p, ManifestFile)
		}
		if want := m.Files[p]; e.digest != want {
			return nil, fileError(c.path, p, ErrDigestMismatch,
				"file %q does not match its digest in %s: want %s, got %s; the file changed after packing", p, ManifestFile, want, e.digest)
		}
	}
	for _, f := range c.Files() {
		if _, ok := m.Files[f.Path]; !ok {
			return nil, fileError(c.path, f.Path, ErrUnlistedFile,
				"file %q is in the capsule but not in %s's files; run tccctl cell pack", f.Path, ManifestFile)
		}
	}
	if err := m.CheckFiles(); err != nil {
		return nil, &Error{Capsule: c.path, File: m.Entrypoint, Err: ErrMissingFile, Msg: ManifestFile, Cause: err}
	}
	return m, nil
}

// VerifySignature checks a cell.sig note against trust and that it signs
// id, and returns the trusted signers' names. The Trust Kernel calls it at
// every launch: a key removed from the trust file stops its cells.
func VerifySignature(sig []byte, id manifest.Identity, trust note.Verifiers) ([]string, error) {
	return verifySignature(id.Short(), sig, id, trust)
}

// verifySignature is VerifySignature for the capsule named where.
func verifySignature(where string, sig []byte, id manifest.Identity, trust note.Verifiers) ([]string, error) {
	if sig == nil {
		return nil, newError(where, ErrNotSigned, "not signed (no %s); run tccctl cell sign", SignatureFile)
	}
	n, err := note.Open(sig, trust)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			var names []string
			for _, s := range unverified.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%q (key %08x)", s.Name, s.Hash))
			}
			where := "the trust file"
			if p, ok := trust.(interface{ Path() string }); ok {
				where += " " + p.Path()
			}
			e := newError(where, ErrUntrustedSigner, "signed by %s, which is not in %s", strings.Join(names, " and "), where)
			if len(names) > 1 {
				e.Msg = fmt.Sprintf("signed by %s, none of which is in %s", strings.Join(names, " and "), where)
			}
			if len(unverified.Note.UnverifiedSigs) > 0 {
				e.Key = unverified.Note.UnverifiedSigs[0].Name
			}
			return nil, e
		case errors.As(err, &invalid):
			e := newError(where, ErrBadSignature, "the signature by %q in %s does not verify: it was altered, or made over other text", invalid.Name, SignatureFile)
			e.Key = invalid.Name
			return nil, e
		}
		return nil, &Error{Capsule: where, File: SignatureFile, Err: ErrBadSignature, Msg: SignatureFile + " is not a signed note", Cause: err}
	}
	var signers []string
	for _, s := range n.Sigs {
		signers = append(signers, s.Name)
	}
	first := fmt.Sprintf("%q", signers[0])
	if len(signers) > 1 {
		first = fmt.Sprintf("%q and others", signers[0])
	}
	domain, rest, _ := strings.Cut(n.Text, "\n")
	if domain != SignatureDomain {
		e := newError(where, ErrWrongDomain, "%s is signed by %s but is not a cell signature (its text starts %q, not %q)",
			SignatureFile, first, truncate(domain, 60), SignatureDomain)
		e.Key = signers[0]
		return nil, e
	}
	if n.Text != SignedText(id) {
		signed := strings.TrimSuffix(rest, "\n")
		if _, err := manifest.ParseIdentity(signed); err != nil || strings.Count(rest, "\n") != 1 {
			e := newError(where, ErrBadSignature, "%s is signed by %s but its text is not \"%s\\n<identity>\\n\"", SignatureFile, first, SignatureDomain)
			e.Key = signers[0]
			return nil, e
		}
		e := newError(where, ErrIdentityMismatch, "signature is for %s but the manifest's identity is %s; the manifest changed after signing", signed, id)
		e.Key = signers[0]
		return nil, e
	}
	return signers, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Sign adds signer's signature to the capsule and writes cell.sig: into the
// directory, or by rewriting the tar file (a temporary file renamed over
// it). Signatures by other keys over the same identity are kept; one by the
// same key is replaced; signatures over another identity (stale) are
// dropped. The capsule must pass every check of Verify but the signature.
func Sign(c *Capsule, signer note.Signer) error {
	m, err := c.checkContents()
	if err != nil {
		return err
	}
	text := SignedText(m.Identity())
	var keep []note.Signature
	if c.sig != nil {
		// Opened with no verifiers, every signature comes back unverified.
		var unverified *note.UnverifiedNoteError
		if _, err := note.Open(c.sig, note.VerifierList()); errors.As(err, &unverified) && unverified.Note.Text == text {
			keep = unverified.Note.UnverifiedSigs
		}
	}
	sig, err := note.Sign(&note.Note{Text: text, Sigs: keep}, signer)
	if err != nil {
		return &Error{Capsule: c.path, Key: signer.Name(), Err: ErrBadSignature, Msg: "signing", Cause: err}
	}
	old := c.sig
	c.sig = sig
	if err := c.save(); err != nil {
		c.sig = old
		return err
	}
	return nil
}

// save writes cell.sig back to where the capsule came from.
func (c *Capsule) save() error {
	if c.format == FormatDir {
		p := filepath.Join(c.path, SignatureFile)
		if err := writeFileAtomic(p, c.sig, 0o644); err != nil {
			return &Error{Capsule: c.path, File: SignatureFile, Err: ErrNotCapsule, Msg: "writing " + SignatureFile, Cause: err}
		}
		return nil
	}
	var buf bytes.Buffer
	if c.format == FormatTarGzip {
		zw := gzip.NewWriter(&buf)
		if err := WriteTar(c, zw); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
	} else if err := WriteTar(c, &buf); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(c.path); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := writeFileAtomic(c.path, buf.Bytes(), perm); err != nil {
		return &Error{Capsule: c.path, Err: ErrNotCapsule, Msg: "rewriting the capsule", Cause: err}
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tcc-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
