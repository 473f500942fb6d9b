package manifest

import (
	"encoding/json"
	"time"
)

// Version is the only manifest format this package reads. The defaults
// documented in docs/MANIFEST.md are part of the format: they are filled in
// before the identity is computed, so changing one means a new version.
const Version = "tcc/v1"

// Manifest is a cell's execution contract. After Parse every optional field
// holds its effective value (defaults applied), so consumers never re-derive
// defaults.
type Manifest struct {
	Version     string `json:"version"`
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description"`

	// Entrypoint is the capsule path of the executable, run as /cell/<path>.
	Entrypoint string   `json:"entrypoint"`
	Args       []string `json:"args"`

	// Input and Output are JSON Schemas (2020-12) in canonical JSON.
	Input  Schema `json:"input"`
	Output Schema `json:"output"`

	Annotations Annotations `json:"annotations"`
	Phase       Phase       `json:"phase"`
	Limits      Limits      `json:"limits"`
	Syscalls    Syscalls    `json:"syscalls"`
	Filesystem  Filesystem  `json:"filesystem"`
	Network     Network     `json:"network"`

	// Nondeterminism declares what may make two runs on the same input
	// differ. Sorted, without duplicates.
	Nondeterminism []Nondeterminism `json:"nondeterminism"`

	Monitor  Monitor   `json:"monitor"`
	Examples []Example `json:"examples"`

	// Parent is the identity this cell replaces; empty for the first cell of
	// a name.
	Parent Identity `json:"parent,omitempty"`

	// Files maps every capsule path other than cell.yaml and cell.sig to the
	// SHA-256 of its content. Written by `tccctl cell pack`.
	Files map[string]Digest `json:"files"`
}

// Annotations are the MCP tool hints. Defaults come from the phase.
type Annotations struct {
	ReadOnly    bool `json:"readOnly"`
	Destructive bool `json:"destructive"`
	Idempotent  bool `json:"idempotent"`
	OpenWorld   bool `json:"openWorld"`
}

// Phase says what a cell may do to the world.
type Phase string

const (
	PhaseObserve Phase = "observe" // reads its input only, no side effects
	PhaseAnalyze Phase = "analyze" // computes over its input, no side effects
	PhaseActuate Phase = "actuate" // may have external side effects
)

// Limits bound one call. Sizes are bytes, durations nanoseconds in the
// canonical encoding; the YAML form is human-readable ("64MiB", "5s").
type Limits struct {
	Memory    Size     `json:"memory"`    // cgroup memory limit
	Pids      int      `json:"pids"`      // cgroup pids limit (tasks, threads included)
	CPU       Cores    `json:"cpu"`       // CPU bandwidth in cores, e.g. 0.5
	Wall      Duration `json:"wall"`      // wall-clock deadline from launch to exit
	Input     Size     `json:"input"`     // largest accepted input JSON
	Output    Size     `json:"output"`    // largest accepted stdout
	Stderr    Size     `json:"stderr"`    // stderr bytes kept (tail); more is dropped, not an error
	Tmp       Size     `json:"tmp"`       // size of /tmp when filesystem.tmp is true
	OpenFiles int      `json:"openFiles"` // RLIMIT_NOFILE
}

// Syscalls is the seccomp allowance: named groups from seccomp-profiles plus
// single syscalls. Everything else is denied.
type Syscalls struct {
	Groups []string `json:"groups"`
	Extra  []string `json:"extra"`
}

// Filesystem lists what the sandbox provides beyond the read-only /cell.
type Filesystem struct {
	Tmp     bool     `json:"tmp"`     // writable tmpfs at /tmp, limits.tmp in size
	Proc    bool     `json:"proc"`    // /proc of the cell's own pid namespace
	Devices []Device `json:"devices"` // nodes under /dev; sorted
}

// Device is a character device a cell may have in /dev.
type Device string

const (
	DeviceNull    Device = "null"
	DeviceZero    Device = "zero"
	DeviceURandom Device = "urandom"
)

// Network is the cell's network grant. Only "none" (loopback only) exists
// in tcc/v1.
type Network string

const NetworkNone Network = "none"

// Nondeterminism is a declared source of run-to-run variation.
type Nondeterminism string

const (
	NondetRandom  Nondeterminism = "random"
	NondetTime    Nondeterminism = "time"
	NondetNetwork Nondeterminism = "network"
)

// Monitor is the behaviour policy applied by the eBPF monitor.
type Monitor struct {
	Policy Policy `json:"policy"`
	// Entropy, when set, is the declared band of output entropy in bits per
	// byte; outside it is a deviation regardless of the learned baseline.
	Entropy *Band `json:"entropy,omitempty"`
	// Threshold is the deviation score at which the policy acts.
	Threshold float64 `json:"threshold"`
}

// Policy is what the monitor does when a run deviates from its baseline.
type Policy string

const (
	PolicyLog      Policy = "log"
	PolicyThrottle Policy = "throttle"
	PolicyHalt     Policy = "halt"
)

// Band is a closed interval.
type Band struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// Example is an input run at registration (the probation run) and used to
// learn the baseline. Output, when set, is the expected result.
type Example struct {
	Name   string          `json:"name"`
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output,omitempty"`
}

// Size is a byte count; in YAML "64MiB", "512KiB", "1GB" or a plain integer.
type Size int64

// Duration is a time span; in YAML "5s", "250ms".
type Duration time.Duration

// Cores is a CPU allowance in cores.
type Cores float64

// Schema is a JSON Schema in canonical JSON (sorted keys, no spaces).
type Schema json.RawMessage

// Identity names a cell: "sha256:" and the hex SHA-256 of its canonical
// manifest.
type Identity string

// Digest is "sha256:" and the hex SHA-256 of a file's content.
type Digest string
