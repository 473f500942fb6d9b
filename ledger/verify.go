package ledger

import "github.com/trustcells/tcc/ledger/audit"

// The verifier side lives in package audit (no pebble), so offline tools
// can use it; these aliases keep the ledger's API whole.

// Checkpoint is the body of a C2SP tlog-checkpoint.
type Checkpoint = audit.Checkpoint

var (
	// ParseCheckpoint parses a checkpoint body.
	ParseCheckpoint = audit.ParseCheckpoint
	// VerifyCheckpoint opens a signed checkpoint with the known verifier
	// keys and returns its body.
	VerifyCheckpoint = audit.VerifyCheckpoint
	// VerifyInclusion checks that leaf is entry seq of the checkpoint's tree.
	VerifyInclusion = audit.VerifyInclusion
	// VerifyConsistency checks that the tree of old is a prefix of new.
	VerifyConsistency = audit.VerifyConsistency
)
