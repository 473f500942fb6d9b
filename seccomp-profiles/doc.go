// Package seccompprofiles holds the syscall groups that cell manifests name
// (syscalls.groups) as reviewed data: one YAML file per group under groups/,
// embedded into the binary, plus never.yaml, the syscalls no cell may ever be
// granted.
//
// It owns the policy, not its enforcement: it knows group names, their
// syscalls (x86_64 names, includes expanded) and why the forbidden ones are
// forbidden. Turning a manifest into a filter is kernel/seccomp's job. This
// package must never make system calls, depend on libseccomp, or offer a
// privileged syscall through any group.
//
// Two groups are internal and always granted: @tcc-runtime (Base), what
// static C and Go binaries need to start, use stdio and exit, measured as
// described in docs/notes/001-seccomp.md; and @tcc-launch, which it
// includes, what libcontainer's init does after loading the filter.
// Manifests cannot name them.
package seccompprofiles
