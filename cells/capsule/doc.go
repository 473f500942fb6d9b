// Package capsule owns cell capsules: a directory, or a .cell tar of one,
// holding cell.yaml (the manifest), the files it lists (the binary and
// read-only data) and cell.sig (a detached signature). It packs, opens,
// signs and verifies them.
//
// Open reads a capsule into memory, with caps on size and entry count, and
// refuses anything but regular files at clean relative paths: symlinks,
// hard links, devices, fifos, absolute or escaping paths and duplicate
// entries are errors that name the path. Verify checks the capsule against
// its manifest (every listed file present with its digest, nothing
// unlisted) and its signature against a trust list.
//
// A signature is a signed note (golang.org/x/mod/sumdb/note) over the text
// "tcc cell signature v1\n<identity>\n". The first line separates the
// domain: a note signed for anything else, a ledger checkpoint for one, is
// never accepted as a cell signature.
//
// This package never executes what it reads, never extracts a capsule onto
// the file system (the daemon copies files out through Files) and never
// follows a symlink.
package capsule
