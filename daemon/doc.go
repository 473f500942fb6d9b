// Package daemon is tccd: it wires the ledger, the Trust Kernel and the MCP
// core together, owns the Unix socket, authenticates callers by their peer
// credentials (SO_PEERCRED) or a bearer token it issued, maps them to a
// tenant and scopes (auth.go, tenants.go, tokens.go), and serves the control
// API and the MCP endpoint on it (the MCP endpoint also on a loopback TCP
// address if asked).
//
// It holds no policy of its own beyond who may call what: verification,
// sandboxing and auditing are done by the packages it wires. It must never
// expose a write to the ledger that is not an append, nor listen on anything
// but the Unix socket and, if asked, a loopback TCP address.
package daemon
