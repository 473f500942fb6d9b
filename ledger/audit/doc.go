// Package audit is the verifiable format of TCC's audit log and its
// offline verifier: the Event record (whose canonical encoding is a Merkle
// leaf), C2SP checkpoints, self-contained inclusion and consistency proofs
// (tcc-proof/v1, tcc-consistency/v1) and signed JSONL exports
// (tcc-audit/v1).
//
// It is what an auditor runs on a machine that does not trust the
// appliance: it needs only the log's verifier key, never a daemon, a
// network or the database, and it imports nothing heavier than the
// standard library, golang.org/x/mod/sumdb and the manifest types, so
// tccctl stays small. The package must never import the ledger (pebble)
// or anything that reaches the kernel. The formats are described in
// docs/notes/003-ledger.md.
package audit
