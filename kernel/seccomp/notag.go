//go:build !cgo || !seccomp

package seccomp

// Without cgo and the seccomp build tag, libcontainer silently starts
// containers with no seccomp filter. Refuse to build instead: the undefined
// name below is the error message.
var _ = kernel_seccomp_needs_CGO_ENABLED_1_and_tags_seccomp
