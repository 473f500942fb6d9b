// Package prompt owns MCP prompt templates as TCC ships them: the
// prompt.yaml format (strict parsing with field-path errors, validation,
// canonical encoding, identity), rendering with arguments, and the signed
// prompt capsule (a directory, or a .prompt tar, holding prompt.yaml and
// prompt.sig).
//
// A prompt's identity is the SHA-256 of its canonical JSON encoding, shown
// as "sha256:<hex>" like a cell's. A signature is a signed note
// (golang.org/x/mod/sumdb/note) over "tcc prompt signature v1\n<identity>\n":
// its own domain, so a cell signature (or a ledger checkpoint) is never
// accepted as a prompt's, nor the other way round. Lineage works as for
// cells: a new version names the current head as its parent.
//
// This package is plain data and parsing: it never resolves a resource,
// reads the vault or touches the network; Render returns the URIs a prompt
// embeds and the caller resolves them under its own access rules.
package prompt
