package api

import (
	"encoding/json"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/outcome"
)

// Profile is the answer of GET /v1/cells/{ref}/profile: the behaviour
// baseline the monitor learnt for an identity.
type Profile struct {
	Identity        string  `json:"identity"`
	Name            string  `json:"name"`
	Monitor         Feature `json:"monitor"`
	Policy          string  `json:"policy"`
	Threshold       float64 `json:"threshold"`
	DeclaredEntropy *Band   `json:"declared_entropy,omitempty"`
	// Learned is false when the identity has no baseline (no examples, or
	// registered while the monitor was unavailable).
	Learned        bool             `json:"learned"`
	ProbationRuns  int              `json:"probation_runs"`
	Runs           int              `json:"runs"`
	UnrecordedRuns int              `json:"unrecorded_runs"` // refinements not yet in the ledger
	RecordedSeq    uint64           `json:"recorded_seq,omitempty"`
	Syscalls       []ProfileSyscall `json:"syscalls"`
	DistinctPairs  int              `json:"distinct_pairs"`
	Entropy        *Band            `json:"entropy,omitempty"`
	Max            *Resources       `json:"max,omitempty"`
	// Baseline is the stored baseline itself (kernel/monitor.Baseline).
	Baseline json.RawMessage `json:"baseline,omitempty"`
}

// ProfileSyscall is one syscall of a baseline or of an advice run.
type ProfileSyscall struct {
	Name   string  `json:"name"`
	Nr     uint32  `json:"nr"`
	Total  uint64  `json:"total"`
	PerRun float64 `json:"per_run"`
}

// Band is a range of output entropy, in bits per byte.
type Band = manifest.Band

// Resources are the per-run quantities a baseline bounds.
type Resources struct {
	Syscalls     uint64 `json:"syscalls"`
	BytesWritten uint64 `json:"bytes_written"`
	Forks        uint64 `json:"forks"`
	Threads      uint64 `json:"threads"`
	Execs        uint64 `json:"execs"`
	CPUNS        uint64 `json:"cpu_ns,omitempty"`
	PeakMemory   uint64 `json:"peak_memory,omitempty"`
}

// Advice is the answer of POST /v1/advise.
type Advice struct {
	Name     string `json:"name"`
	Identity string `json:"identity"`
	Rule     string `json:"rule"`
	// Syscalls is the draft: the smallest groups + extra that allow what
	// the examples did.
	Syscalls *AdviceSyscalls `json:"syscalls"`
	// YAML is Syscalls as a manifest block.
	YAML string `json:"yaml"`
	// Observed is every syscall the examples made, with its count.
	Observed []ProfileSyscall `json:"observed"`
	// Missing are used syscalls the manifest as written does not grant;
	// Unneeded are its extra syscalls the examples never made.
	Missing  []string `json:"missing"`
	Unneeded []string `json:"unneeded"`
	// Granted are syscalls the permissive profile had to allow outright
	// after a kill on them (it only answers their probes otherwise).
	Granted  []string        `json:"granted,omitempty"`
	Examples []AdviceExample `json:"examples"`
}

// AdviceSyscalls is a drafted syscalls block and why (kernel/seccomp.Advice).
type AdviceSyscalls struct {
	Groups    []string            `json:"groups"`              // chosen groups, sorted
	Extra     []string            `json:"extra"`               // used syscalls no chosen group grants, sorted
	Covers    map[string][]string `json:"covers,omitempty"`    // per chosen group, the used syscalls it grants
	Unused    []string            `json:"unused,omitempty"`    // granted by the groups, not used, not in the base
	Base      []string            `json:"base,omitempty"`      // used syscalls every cell is granted
	Forbidden map[string]string   `json:"forbidden,omitempty"` // used syscalls no contract may grant, and why
	Unknown   []string            `json:"unknown,omitempty"`   // names the seccomp library does not know
}

// AdviceExample is how one run of an example went under the permissive
// profile.
type AdviceExample struct {
	Name    string          `json:"name"`
	Run     int             `json:"run"`
	Verdict outcome.Verdict `json:"verdict"`
	Message string          `json:"message,omitempty"`
	Syscall string          `json:"syscall,omitempty"` // of a seccomp kill
}
