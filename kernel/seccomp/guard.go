//go:build cgo && seccomp

package seccomp

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// x32Bit marks an x32 syscall number on x86_64.
const x32Bit = 0x40000000

// archGuard kills the process on any syscall that does not use the native
// x86_64 ABI and lets everything else through to the other filters.
//
//	0: ld  [4]                  ; seccomp_data.arch
//	1: jeq #AUDIT_ARCH_X86_64, 2, 5
//	2: ld  [0]                  ; seccomp_data.nr
//	3: jset #0x40000000, 5, 4   ; x32
//	4: ret #ALLOW
//	5: ret #KILL_PROCESS
var archGuard = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: unix.AUDIT_ARCH_X86_64},
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
	{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 1, Jf: 0, K: x32Bit},
	{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_KILL_PROCESS},
}

// InstallArchGuard loads, on every thread of the calling process, a filter
// that kills the process on any x32 or i386 (int 0x80) syscall. Filters are
// inherited across fork and exec and cannot be removed.
//
// libcontainer's filter, built from Profile.Config, already refuses those
// syscalls, but with libseccomp's bad-architecture action, which kills only
// the calling thread: a multi-threaded cell would lose a thread and go on.
// configs.Seccomp has no field to change that, so the sandbox calls this in
// runc's init, before libcontainer.Init; it then covers runc's init and the
// cell. It needs CAP_SYS_ADMIN or no_new_privs, which runc's init has.
func InstallArchGuard() error {
	if runtime.GOARCH != "amd64" {
		return ErrNotSupported
	}
	prog := unix.SockFprog{Len: uint16(len(archGuard)), Filter: &archGuard[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(&prog)
	switch {
	case errno == unix.EACCES:
		return fmt.Errorf("install arch guard: %w (needs CAP_SYS_ADMIN or no_new_privs)", os.NewSyscallError("seccomp", errno))
	case errno != 0:
		return fmt.Errorf("install arch guard: %w", os.NewSyscallError("seccomp", errno))
	case r != 0:
		// With TSYNC a positive return is a thread that could not be
		// synchronised (it runs under a filter the others do not share).
		return fmt.Errorf("install arch guard: thread %d could not be synchronised: %w", r, errors.ErrUnsupported)
	}
	return nil
}
