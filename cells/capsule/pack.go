package capsule

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

// Packed is the result of Pack.
type Packed struct {
	Manifest *manifest.Manifest
	Identity manifest.Identity
	// Rewrote is true when cell.yaml's files changed and it was rewritten.
	Rewrote bool
	// Warnings say what Pack did that the user should know, e.g. that it
	// removed a cell.sig that no longer matched.
	Warnings []string
}

// Pack hashes every regular file of the capsule directory dir except
// cell.yaml and cell.sig, writes the digests into cell.yaml's files
// (keeping the rest of cell.yaml as written), and checks the result as
// Verify would, plus that the entrypoint is executable. A cell.sig over
// another identity is removed, with a warning: it no longer matches.
// Nothing is written unless the packed manifest is valid.
func Pack(dir string) (*Packed, error) {
	c, err := Open(dir)
	if err != nil {
		return nil, err
	}
	if c.format != FormatDir {
		return nil, newError(dir, ErrNotCapsule, "pack works on a capsule directory, not a %s file", c.format)
	}
	files := make(map[string]manifest.Digest, len(c.files))
	for p, e := range c.files {
		files[p] = e.digest
	}
	raw, err := manifest.PatchFiles(c.raw, files)
	if err != nil {
		return nil, &Error{Capsule: dir, File: ManifestFile, Err: ErrInvalidManifest, Msg: ManifestFile, Cause: err}
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, &Error{Capsule: dir, File: ManifestFile, Err: ErrInvalidManifest, Msg: ManifestFile, Cause: err}
	}
	if err := m.CheckFiles(); err != nil {
		return nil, &Error{Capsule: dir, File: m.Entrypoint, Err: ErrMissingFile,
			Msg: fmt.Sprintf("entrypoint %q is not in the capsule; build it first", m.Entrypoint)}
	}
	if c.files[m.Entrypoint].perm&0o111 == 0 {
		return nil, fileError(dir, m.Entrypoint, ErrNotExecutable, "entrypoint %q is not executable; chmod +x %s",
			m.Entrypoint, filepath.Join(dir, m.Entrypoint))
	}

	p := &Packed{Manifest: m, Identity: m.Identity()}
	if !bytes.Equal(raw, c.raw) {
		yamlPath := filepath.Join(dir, ManifestFile)
		perm := os.FileMode(0o644)
		if fi, err := os.Stat(yamlPath); err == nil {
			perm = fi.Mode().Perm()
		}
		if err := writeFileAtomic(yamlPath, raw, perm); err != nil {
			return nil, &Error{Capsule: dir, File: ManifestFile, Err: ErrNotCapsule, Msg: "writing " + ManifestFile, Cause: err}
		}
		p.Rewrote = true
	}
	if c.sig != nil {
		if signed, ok := signedIdentity(c.sig); !ok || signed != p.Identity {
			if err := os.Remove(filepath.Join(dir, SignatureFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, &Error{Capsule: dir, File: SignatureFile, Err: ErrNotCapsule, Msg: "removing the stale " + SignatureFile, Cause: err}
			}
			what := "it was not a cell signature"
			if ok {
				what = "it signed " + signed.Short()
			}
			p.Warnings = append(p.Warnings, fmt.Sprintf("removed %s: %s and the capsule is now %s; the signature no longer matches, so sign again (tccctl cell sign)",
				SignatureFile, what, p.Identity.Short()))
		}
	}
	return p, nil
}

// signedIdentity reads the identity a cell.sig claims to sign, without
// checking any signature.
func signedIdentity(sig []byte) (manifest.Identity, bool) {
	var unverified *note.UnverifiedNoteError
	if _, err := note.Open(sig, note.VerifierList()); !errors.As(err, &unverified) {
		return "", false
	}
	rest, ok := strings.CutPrefix(unverified.Note.Text, SignatureDomain+"\n")
	if !ok || !strings.HasSuffix(rest, "\n") {
		return "", false
	}
	id, err := manifest.ParseIdentity(strings.TrimSuffix(rest, "\n"))
	return id, err == nil
}
