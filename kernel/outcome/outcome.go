// Package outcome describes how one call of a cell ended: the verdict, the
// result, the resources it used and the wipe check. It is plain data, shared
// by the Trust Kernel that produces it, the daemon that records and serves
// it, and the CLI that prints it; it must never import anything heavier than
// the standard library.
package outcome

import (
	"encoding/json"
	"fmt"
	"time"
)

// Verdict classifies how a call ended. Only VerdictOK carries a result.
type Verdict string

const (
	OK             Verdict = "ok"               // exit 0, output valid
	Error          Verdict = "error"            // non-zero exit
	Violation      Verdict = "violation"        // killed by seccomp: used a syscall outside its contract
	OOM            Verdict = "oom"              // killed at the memory limit
	PidsLimit      Verdict = "pids-limit"       // hit the process limit and failed
	Timeout        Verdict = "timeout"          // killed at the wall-clock deadline
	OutputTooLarge Verdict = "output-too-large" // stdout passed limits.output; killed
	InvalidOutput  Verdict = "invalid-output"   // stdout not one JSON object matching the output schema
	Refused        Verdict = "refused"          // the verification gate refused to launch
	Halted         Verdict = "halted"           // the behaviour monitor stopped it, or judged it after exit; result withheld
	Cancelled      Verdict = "cancelled"        // the caller went away; killed
	Crashed        Verdict = "crashed"          // killed by a signal not explained above
	Internal       Verdict = "internal"         // the daemon failed to run it, or to tell how it ended (its log says why)
)

// Outcome is the full record of one call.
type Outcome struct {
	Cell     string          `json:"cell"`
	Identity string          `json:"identity"`
	Verdict  Verdict         `json:"verdict"`
	Message  string          `json:"message"` // one sentence for a human, e.g. why it was stopped
	Result   json.RawMessage `json:"result,omitempty"`
	Stderr   string          `json:"stderr,omitempty"` // tail, capped by limits.stderr

	ExitCode int    `json:"exit_code"`        // -1 when killed by a signal
	Signal   string `json:"signal,omitempty"` // e.g. "SIGKILL"

	Duration   Duration `json:"duration"`    // launch to exit
	CPU        Duration `json:"cpu"`         // user+system of the whole cell
	PeakMemory int64    `json:"peak_memory"` // bytes

	// Violation names the syscall a seccomp kill was for, when known.
	Violation *SyscallViolation `json:"violation,omitempty"`

	Wipe Wipe `json:"wipe"`

	// Monitor is the behaviour fingerprint of the run, or why there is none.
	Monitor json.RawMessage `json:"monitor,omitempty"`

	// Seq numbers of the ledger events that bracket the call.
	BeginSeq uint64 `json:"begin_seq"`
	EndSeq   uint64 `json:"end_seq"`
	TraceID  string `json:"trace_id,omitempty"`
}

// SyscallViolation is a seccomp kill.
type SyscallViolation struct {
	Syscall string `json:"syscall"` // name on the native architecture, "" if unknown
	Nr      int    `json:"nr"`
}

// Wipe is the result of destroying the sandbox and checking that nothing of
// it remains on the host.
type Wipe struct {
	Clean     bool     `json:"clean"`
	Leftovers []string `json:"leftovers,omitempty"`
	Elapsed   Duration `json:"elapsed"`
}

// Duration marshals as integer nanoseconds and prints as Go duration text.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// OK reports whether the call succeeded.
func (o *Outcome) OK() bool { return o.Verdict == OK }

// Summary is the one-line account of the verdict that MCP tool errors and
// the CLI show.
func (o *Outcome) Summary() string {
	if o.Message != "" {
		return o.Message
	}
	return fmt.Sprintf("cell %s ended with verdict %s", o.Cell, o.Verdict)
}
