package sandbox

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidSpec means a Spec cannot describe a sandbox; the
	// *SpecError says which field and why.
	ErrInvalidSpec = errors.New("invalid sandbox spec")
	// ErrExists means a sandbox with that ID exists already.
	ErrExists = errors.New("sandbox already exists")
	// ErrBusy means every host id range is taken by a live sandbox.
	ErrBusy = errors.New("no free sandbox slot")
	// ErrState means the call does not fit the sandbox's state (Launch
	// twice, Launch after Kill, SetCPU above the contract...).
	ErrState = errors.New("wrong sandbox state")
	// ErrNotSupported means the host lacks a kernel feature the sandbox
	// needs; the message names it.
	ErrNotSupported = errors.New("not supported by this host")
	// ErrNotRoot means the process is not root; sandboxes need root.
	ErrNotRoot = errors.New("sandboxes need root")
	// ErrParentInUse means another Manager (another tccd) holds the
	// cgroup parent: its sweep would take our live sandboxes for orphans.
	ErrParentInUse = errors.New("cgroup parent in use")
)

// SpecError is a Spec field that cannot be used.
type SpecError struct {
	Field string // e.g. "Files[2].Path", "Seccomp"
	Msg   string // what is wrong and what to do
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("sandbox spec: %s: %s", e.Field, e.Msg)
}

func (e *SpecError) Unwrap() error { return ErrInvalidSpec }

func specErr(field, format string, args ...any) error {
	return &SpecError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error is a failure of one operation on one sandbox.
type Error struct {
	Op  string // "prepare", "launch", "kill", ...
	ID  string // sandbox ID
	Err error
	// Wipe is the report of the clean-up a failed Prepare did of what it
	// had made; nil when it had made nothing.
	Wipe *WipeReport
}

func (e *Error) Error() string {
	return fmt.Sprintf("sandbox %s: %s: %v", e.ID, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
