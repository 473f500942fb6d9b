//go:build tcc_unsafe_test

package kernel

import "github.com/trustcells/tcc/kernel/seccomp"

// Only a test build of tccd (go build -tags seccomp,tcc_unsafe_test, made
// by the integration tests in test/) carries the unsafe seccomp compiler
// behind Config.UnsafeTestProfiles. test/isolation_test.go checks that the
// production binary does not contain seccomp.CompileUnsafeForTest.
func init() { unsafeCompile = seccomp.CompileUnsafeForTest }
