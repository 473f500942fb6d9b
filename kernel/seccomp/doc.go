// Package seccomp turns a cell's syscall contract (manifest.Syscalls) into
// the seccomp filter its sandbox runs under.
//
// Compile merges the always-granted base group (@tcc-runtime, which
// includes @tcc-launch), the requested groups from seccomp-profiles and the
// requested extra syscalls, refuses anything unknown on x86_64 or forbidden
// forever (seccomp-profiles/never.yaml), narrows the arguments of a few
// syscalls (clone, socket, socketpair, prlimit64) and adds errno answers for
// the calls libc and the Go runtime probe and do without (clone3, rseq, ...).
// The result, a Profile, is handed to libcontainer as a *configs.Seccomp:
// libcontainer compiles it with libseccomp inside runc's init, just before
// it exec's the cell.
//
// Any syscall outside the contract kills the whole cell (SECCOMP_RET_KILL_PROCESS),
// except those numbered above the highest syscall the profile names, which
// runc's -ENOSYS stub answers with ENOSYS so that libc can fall back from
// syscalls newer than the contract. Foreign-ABI syscalls (x32, i386 through
// int 0x80) only kill the calling thread through libcontainer's filter;
// InstallArchGuard, called in runc's init before libcontainer.Init, makes
// them kill the process. docs/notes/001-seccomp.md has the measurements and
// the reasons.
//
// CompileUnsafeForTest skips the forbidden list and every argument
// narrowing, so that adversarial tests can show that namespaces and
// capabilities hold on their own. Production code must never call it; a
// test in this package fails if any non-test file does.
//
// This package supports native x86_64 only. It must be built with cgo and
// the seccomp build tag (the Makefile sets both): without them libcontainer
// would run cells with no filter at all, so the package refuses to build.
package seccomp
