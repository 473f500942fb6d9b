// Package kernel is the Trust Kernel: it decides whether a call may run and
// runs it. For each call it validates the input against the contract, waits
// for admission, re-verifies the cell (the gate), builds the sandbox from
// the manifest, launches the cell, enforces the output cap and the deadline,
// classifies the ending into a verdict, and wipes the sandbox, checking that
// nothing remains.
//
// The sandbox shows the very store files the gate opened and hashed (open
// descriptors, never paths), and what the monitor sees after the cell
// exited still decides the verdict.
//
// It knows nothing of HTTP, MCP or the ledger's storage: the catalogue is an
// interface, and the audit events bracketing a call are written by the
// caller through Request.Begin and the returned Outcome. It must never
// launch a cell the gate has not passed at that moment, nor return before
// the cell's sandbox is gone, nor wait without bound for anything outside
// itself (a killed cell, a Progress callback).
package kernel
