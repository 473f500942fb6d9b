// Package keys reads and writes Ed25519 keys in the signed-note format of
// golang.org/x/mod/sumdb/note (the format of C2SP checkpoints), and the
// daemon's trust file. One key format serves cell signatures and ledger
// checkpoints.
//
// A signer key file (NAME.key) holds the secret "PRIVATE+KEY+NAME+HASH+…"
// line and must be readable by its owner only; a verifier key file
// (NAME.pub) holds the public "NAME+HASH+…" line. The trust file lists one
// verifier key per line.
//
// This package never prints, logs or puts a secret key in an error message.
package keys
