// Package attack is the hostile multi-tool behind the adversarial test
// cells in test/cells/hostile*: each attack probes one claim of the sandbox
// (a namespace, a dropped capability, a limit, the seccomp filter, the
// monitor) and reports what happened as JSON, so root integration tests can
// assert that the claim held.
//
// Safety: the binary does nothing unless it is PID 1 of a fresh pid
// namespace (getpid() == 1, getppid() == 0, and /proc, if mounted, agrees);
// otherwise it exits 3 with "hostile: refusing to run outside a fresh pid
// namespace". Even inside, every attack only probes: arguments are chosen so
// that a call that gets through does no harm (reboot with invalid magic,
// mount of an unknown filesystem type or of a tmpfs on a directory it made
// itself and unmounts at once, pivot_root of paths that do not exist,
// chroot("/"), a BPF program that returns 0 and is never attached). It never
// changes the clock, loads kernel code, writes outside directories it
// created or prints the content of anything it manages to read.
//
// This package makes raw system calls through the standard library's
// syscall package on purpose: it plays the role of untrusted cell code, to
// which the project's rule that only kernel/... and ebpf make raw calls does
// not apply.
package attack
