package prompt

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

// SignatureDomain is the first line of every prompt signature's text.
const SignatureDomain = "tcc prompt signature v1"

// maxSignature caps prompt.sig.
const maxSignature = 64 << 10

// Verification failures. VerifyError wraps one of them.
var (
	ErrNotSigned        = errors.New("not signed")
	ErrUntrustedSigner  = errors.New("untrusted signer")
	ErrBadSignature     = errors.New("bad signature")
	ErrWrongDomain      = errors.New("not a prompt signature")
	ErrIdentityMismatch = errors.New("signature is for another identity")
)

// VerifyError is a prompt capsule whose signature was refused.
type VerifyError struct {
	Capsule string
	Err     error // one of the sentinels above
	Msg     string
}

func (e *VerifyError) Error() string { return e.Capsule + ": " + e.Msg }
func (e *VerifyError) Unwrap() error { return e.Err }

// SignedText is the exact text a prompt signature signs for id.
func SignedText(id manifest.Identity) string {
	return SignatureDomain + "\n" + string(id) + "\n"
}

// Capsule is a prompt capsule read into memory: prompt.yaml, parsed, and
// prompt.sig if present.
type Capsule struct {
	Path   string
	Raw    []byte // prompt.yaml as stored
	Sig    []byte // prompt.sig, nil when absent
	Prompt *Prompt
	isDir  bool
}

// Open reads a prompt capsule: a directory holding prompt.yaml (and
// prompt.sig once signed; other files are not part of it), or a .prompt tar
// of those two files.
func Open(path string) (*Capsule, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("prompt capsule: %w", err)
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("prompt capsule: %w", err)
		}
		defer f.Close()
		return ReadTar(f, path)
	}
	c := &Capsule{Path: path, isDir: true}
	if c.Raw, err = readCapped(filepath.Join(path, File), MaxSize); err != nil {
		return nil, fmt.Errorf("prompt capsule %s: %w", path, err)
	}
	if c.Sig, err = readCapped(filepath.Join(path, SignatureFile), maxSignature); errors.Is(err, os.ErrNotExist) {
		c.Sig = nil
	} else if err != nil {
		return nil, fmt.Errorf("prompt capsule %s: %w", path, err)
	}
	if c.Prompt, err = Parse(c.Raw); err != nil {
		return nil, fmt.Errorf("prompt capsule %s: %w", path, err)
	}
	return c, nil
}

func readCapped(path string, limit int64) ([]byte, error) {
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
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(path), limit)
	}
	return b, nil
}

// ReadTar reads a .prompt tar: regular files prompt.yaml and, optionally,
// prompt.sig, nothing else. where names it in errors.
func ReadTar(r io.Reader, where string) (*Capsule, error) {
	c := &Capsule{Path: where}
	tr := tar.NewReader(io.LimitReader(r, MaxSize+maxSignature+16<<10))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("prompt capsule %s: not a tar of %s and %s: %w", where, File, SignatureFile, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("prompt capsule %s: entry %q is not a regular file", where, h.Name)
		}
		var dst *[]byte
		limit := int64(MaxSize)
		switch strings.TrimPrefix(h.Name, "./") {
		case File:
			dst = &c.Raw
		case SignatureFile:
			dst, limit = &c.Sig, maxSignature
		default:
			return nil, fmt.Errorf("prompt capsule %s: unexpected entry %q (a prompt capsule holds %s and %s only)", where, h.Name, File, SignatureFile)
		}
		if *dst != nil {
			return nil, fmt.Errorf("prompt capsule %s: entry %q appears twice", where, h.Name)
		}
		if h.Size > limit {
			return nil, fmt.Errorf("prompt capsule %s: %s is larger than %d bytes", where, h.Name, limit)
		}
		if *dst, err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("prompt capsule %s: %w", where, err)
		}
	}
	if c.Raw == nil {
		return nil, fmt.Errorf("prompt capsule %s: no %s", where, File)
	}
	var err error
	if c.Prompt, err = Parse(c.Raw); err != nil {
		return nil, fmt.Errorf("prompt capsule %s: %w", where, err)
	}
	return c, nil
}

// WriteTar writes the capsule as a deterministic tar: prompt.yaml, then
// prompt.sig if signed, mode 0644, mtime 0.
func (c *Capsule) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	write := func(name string, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write(File, c.Raw); err != nil {
		return fmt.Errorf("write prompt tar: %w", err)
	}
	if c.Sig != nil {
		if err := write(SignatureFile, c.Sig); err != nil {
			return fmt.Errorf("write prompt tar: %w", err)
		}
	}
	return tw.Close()
}

// Sign adds signer's signature over the prompt's identity and saves
// prompt.sig (into the directory, or by rewriting the tar). Signatures by
// other keys over the same identity are kept; stale ones are dropped.
func Sign(c *Capsule, signer note.Signer) error {
	text := SignedText(c.Prompt.Identity())
	var keep []note.Signature
	if c.Sig != nil {
		var unverified *note.UnverifiedNoteError
		if _, err := note.Open(c.Sig, note.VerifierList()); errors.As(err, &unverified) && unverified.Note.Text == text {
			for _, s := range unverified.Note.UnverifiedSigs {
				if s.Name != signer.Name() {
					keep = append(keep, s)
				}
			}
		}
	}
	sig, err := note.Sign(&note.Note{Text: text, Sigs: keep}, signer)
	if err != nil {
		return fmt.Errorf("sign prompt %s: %w", c.Prompt.Name, err)
	}
	c.Sig = sig
	if c.isDir {
		return writeAtomic(filepath.Join(c.Path, SignatureFile), sig)
	}
	var buf bytes.Buffer
	if err := c.WriteTar(&buf); err != nil {
		return err
	}
	return writeAtomic(c.Path, buf.Bytes())
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Verify checks prompt.sig against trust and that it signs this prompt's
// identity in the prompt domain; it returns the trusted signers' names.
func Verify(c *Capsule, trust note.Verifiers) ([]string, error) {
	id := c.Prompt.Identity()
	fail := func(err error, format string, args ...any) error {
		return &VerifyError{Capsule: c.Path, Err: err, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Sig == nil {
		return nil, fail(ErrNotSigned, "not signed (no %s); run tccctl prompt sign", SignatureFile)
	}
	n, err := note.Open(c.Sig, trust)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			var names []string
			for _, s := range unverified.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%q", s.Name))
			}
			return nil, fail(ErrUntrustedSigner, "signed by %s, which is not in the trust file", strings.Join(names, " and "))
		case errors.As(err, &invalid):
			return nil, fail(ErrBadSignature, "the signature by %q in %s does not verify: it was altered, or made over other text", invalid.Name, SignatureFile)
		}
		return nil, fail(ErrBadSignature, "%s is not a signed note: %v", SignatureFile, err)
	}
	domain, rest, _ := strings.Cut(n.Text, "\n")
	if domain != SignatureDomain {
		return nil, fail(ErrWrongDomain, "%s is signed by %q but is not a prompt signature (its text starts %q, not %q)", SignatureFile, n.Sigs[0].Name, domain, SignatureDomain)
	}
	if n.Text != SignedText(id) {
		return nil, fail(ErrIdentityMismatch, "signature is for %s but the prompt's identity is %s; the prompt changed after signing", strings.TrimSpace(rest), id)
	}
	var signers []string
	for _, s := range n.Sigs {
		signers = append(signers, s.Name)
	}
	return signers, nil
}
