//go:build !seccomp || !cgo

package sandbox

// Without cgo and the seccomp build tag libcontainer compiles without seccomp
// support and would run every cell with no syscall filter at all, silently.
// This reference to an undefined name stops such a build; its name is the
// message: build with CGO_ENABLED=1 and GOFLAGS=-tags=seccomp.
var _ = build_with_tags_seccomp_and_cgo_see_Makefile
