// Package ledger owns the daemon's durable state: one pebble database
// holding the cell catalogue (records, lineage, heads, revocations) and the
// audit log, plus a content-addressed store for cell binaries and data
// files.
//
// Every state change is an Event appended to a single log. The stored bytes
// of an event are a leaf of an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog),
// and the tree is summarised by C2SP checkpoints signed with a note key, so
// anyone holding the verifier key can check inclusion and consistency
// offline. Every committed group signs the checkpoint of its tree in its
// own batch; Open refuses a store its newest signed checkpoint does not
// cover exactly, and every event read is proven against the signed root,
// so the ledger never vouches for a history it did not write.
//
// The event format, the proof and export documents and their verifier
// live in package ledger/audit, which does not link pebble; the ledger
// writes them (InclusionProof, ConsistencyProof, Export). Calls are
// indexed while open, so a crash's unfinished calls can be closed
// (OpenCalls). Package ledger/blobs keeps call inputs for replay.
//
// Appends are group-committed: one goroutine applies queued appends in
// order to one batch and syncs it once. Catalogue changes are Mutations run
// inside that goroutine, so the lineage rules are checked race-free and a
// record, its indexes and its event are written in the same batch: after a
// crash each is either wholly present or wholly absent.
//
// The package must never: serve or parse network requests, log (errors are
// returned; pebble's own messages go to Options.Logger), interpret manifests
// beyond the identity and name it is given, rewrite or delete an event,
// a cell record or an object once written (a damaged object is replaced by
// an intact copy), or sign a tree it has not checked. The design is in
// docs/notes/003-ledger.md.
package ledger
