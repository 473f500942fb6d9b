// Command cellprobe is the monitor tests' stand-in for a cell: a static
// program whose syscalls the tests know. It is harmless outside a sandbox.
//
//	cellprobe getppid N   call getppid N times
//	cellprobe random N    write N random bytes to stdout in one write
//	cellprobe repeat N    write N 'A' bytes to stdout in one write
//	cellprobe writev N    write N random bytes to stdout in one writev of 4 iovecs
//	cellprobe forkexec    run "cellprobe exit" as a child and wait for it
//	cellprobe exit        exit 0
//	cellprobe seccomp     deny getppid with SECCOMP_RET_KILL_PROCESS, call it
//	cellprobe sigsys      kill itself with SIGSYS (not a seccomp kill)
//	cellprobe seccomp-thread  deny getppid to one thread with
//	                      SECCOMP_RET_KILL_THREAD, call it there, exit 0
//	cellprobe seccomp-order   the same on CPU 1 with getppid, then on CPU 0
//	                      with getuid, exit 0
//	cellprobe seccomp-ia32    deny other arches, then make an ia32 getpid
//	                      (int 0x80, eax 20: writev on x86_64)
//	cellprobe badwrite    write "abc" to stdout, then fail a write of 2^62 bytes
//	cellprobe partial     write one page of random bytes to stdout by asking
//	                      for 1 GiB from that page, followed by an unreadable one
//	cellprobe writev-tail write 8 one-byte iovecs of 'A' and 8 of 4 KiB random
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: cellprobe MODE [N]")
	}
	n := 0
	if len(os.Args) > 2 {
		var err error
		if n, err = strconv.Atoi(os.Args[2]); err != nil {
			fail(err.Error())
		}
	}
	switch os.Args[1] {
	case "getppid":
		for range n {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
	case "random":
		b := make([]byte, n)
		rand.Read(b)
		write(b)
	case "writev":
		b := make([]byte, n)
		rand.Read(b)
		q := n / 4
		writev([][]byte{b[:q], b[q : 2*q], b[2*q : 3*q], b[3*q:]})
	case "repeat":
		write(bytes.Repeat([]byte{'A'}, n))
	case "forkexec":
		self, err := os.Executable()
		if err != nil {
			fail(err.Error())
		}
		if err := exec.Command(self, "exit").Run(); err != nil {
			fail(err.Error())
		}
	case "exit":
	case "seccomp":
		denyGetppid(unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_FILTER_FLAG_TSYNC)
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		fail("getppid survived the seccomp filter")
	case "sigsys":
		// The Go runtime handles SIGSYS: restore the default (terminate).
		var act [4]uint64 // struct sigaction: handler SIG_DFL, flags, restorer, mask
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(syscall.SIGSYS), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
		syscall.Kill(os.Getpid(), syscall.SIGSYS)
		time.Sleep(time.Second)
		fail("SIGSYS did not kill")
	case "seccomp-thread":
		go func() {
			denyGetppid(unix.SECCOMP_RET_KILL_THREAD, 0)
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
			fail("getppid survived the seccomp filter")
		}()
		time.Sleep(200 * time.Millisecond)
	case "seccomp-order":
		// The first kill on the second CPU: per-CPU order would put the
		// later one first. Each thread dies holding a P of the Go
		// runtime: leave it enough to go on.
		runtime.GOMAXPROCS(4)
		for _, k := range []struct{ cpu, nr int }{{1, unix.SYS_GETPPID}, {0, unix.SYS_GETUID}} {
			go func() {
				runtime.LockOSThread()
				var set unix.CPUSet
				set.Set(k.cpu)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					fail("sched_setaffinity: " + err.Error())
				}
				deny(uint32(k.nr), unix.SECCOMP_RET_KILL_THREAD, 0)
				syscall.RawSyscall(uintptr(k.nr), 0, 0, 0)
				fail("the seccomp filter let the call through")
			}()
			time.Sleep(100 * time.Millisecond)
		}
	case "seccomp-ia32":
		denyGetppid(unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_FILTER_FLAG_TSYNC)
		int80(20)
		fail("an ia32 syscall survived the seccomp filter")
	case "badwrite":
		b := []byte("abc")
		write(b)
		if _, _, e := syscall.RawSyscall(syscall.SYS_WRITE, 1, uintptr(unsafe.Pointer(&b[0])), 1<<62); e == 0 {
			fail("a write of 2^62 bytes succeeded")
		}
	case "partial":
		page := os.Getpagesize()
		m, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fail(err.Error())
		}
		rand.Read(m[:page])
		if err := unix.Mprotect(m[page:], unix.PROT_NONE); err != nil {
			fail(err.Error())
		}
		// The pipe takes what it can copy: the page, then a fault.
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, 1, uintptr(unsafe.Pointer(&m[0])), 1<<30)
		if e != 0 || int(n) != page {
			fail(fmt.Sprintf("write from a page followed by a hole: %d bytes, %v; want %d", n, e, page))
		}
	case "writev-tail":
		var iovs [][]byte
		for range 8 {
			iovs = append(iovs, []byte{'A'})
		}
		for range 8 {
			b := make([]byte, 4096)
			rand.Read(b)
			iovs = append(iovs, b)
		}
		writev(iovs)
	default:
		fail("unknown mode " + os.Args[1])
	}
}

// writev writes all of iovs to stdout.
func writev(iovs [][]byte) {
	for len(iovs) > 0 {
		w, err := unix.Writev(1, iovs)
		if err != nil {
			fail(err.Error())
		}
		for len(iovs) > 0 && w >= len(iovs[0]) {
			w -= len(iovs[0])
			iovs = iovs[1:]
		}
		if len(iovs) > 0 {
			iovs[0] = iovs[0][w:]
		}
	}
}

// int80 makes ia32 syscall nr (int 0x80); int80_amd64.s.
func int80(nr uintptr) uintptr

func write(b []byte) {
	if _, err := os.Stdout.Write(b); err != nil {
		fail(err.Error())
	}
}

// denyGetppid installs a filter that kills with action on getppid, on this
// thread only unless flags has SECCOMP_FILTER_FLAG_TSYNC. Every other
// arch's syscall kills the process.
func denyGetppid(action uint32, flags uintptr) { deny(unix.SYS_GETPPID, action, flags) }

func deny(nr, action uint32, flags uintptr) {
	runtime.LockOSThread()
	const archOff, nrOff = 4, 0 // struct seccomp_data
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: nr},
		{Code: unix.BPF_RET | unix.BPF_K, K: action},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("no_new_privs: " + err.Error())
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		flags, uintptr(unsafe.Pointer(&prog))); e != 0 {
		fail("seccomp: " + e.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "cellprobe:", msg)
	os.Exit(2)
}
