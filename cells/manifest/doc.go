// Package manifest owns the cell manifest (cell.yaml): its types, strict
// parsing of YAML or JSON, the defaults of tcc/v1, validation, the canonical
// encoding and the identity derived from it.
//
// Parse is the only way in: it rejects unknown fields, wrong types and
// duplicate keys, fills in every default, and reports every problem at once
// as a *ValidationError made of *FieldError values that name the field path
// and line. A manifest returned by Parse is complete: consumers read its
// fields and never re-derive defaults.
//
// The identity of a cell is the SHA-256 of Canonical, the deterministic JSON
// of the fully defaulted manifest; the defaults are therefore part of the
// tcc/v1 format and cannot change without a new version.
//
// This package never reads files, resolves syscall groups (kernel/seccomp
// does, with libseccomp) or checks signatures (cells/capsule does).
package manifest
