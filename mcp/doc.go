// Package mcp is TCC's Model Context Protocol core, built on the official
// Go SDK (github.com/modelcontextprotocol/go-sdk): registered cells as
// tools, the ledger, cell contracts and the tenant vault as resources,
// signed prompt templates as prompts, per-request authorization by tenant
// and scope, the Streamable HTTP endpoint, and the stdio bridge that
// `tccctl mcp` runs for MCP hosts.
//
// The package sees the daemon only through the small interfaces in
// backend.go (Authenticator, Cells, Runner, Audit, Vault, Prompts); it
// never reaches the Trust Kernel or the ledger directly, so every call and
// every read goes through the daemon's verification and audit path.
//
// One SDK server holds every tool, prompt and resource of every tenant;
// the HTTP layer (guard.go) authenticates each request, caps its size and
// the sessions of a caller, checks its Origin and refuses a method whose
// scope the caller lacks (403, insufficient_scope) before the SDK sees it,
// and a receiving middleware filters every list by the caller's tenant and
// checks again inside each handler; the daemon checks a call's scopes once
// more against the cell that runs. Disconnect cuts a caller's streams and
// sessions off when its standing changes (a revoked token). Requests without a session that are not an
// initialize go to a stateless handler (protocol 2026-07-28 and
// sessionless legacy requests); initialize and requests carrying a
// Mcp-Session-Id go to a stateful one (2025-11-25, 2025-06-18 clients).
//
// The stdio bridge (bridge.go) reaches tccd through an HTTP client the
// caller provides (tccctl passes daemon/api's socket client).
//
// It must never run a cell, read a vault document or render a prompt for
// a caller it has not authorized, never log request bodies, and never
// send a client the details of tccd's own errors (they go to the log).
package mcp
