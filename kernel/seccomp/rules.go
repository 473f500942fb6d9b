//go:build cgo && seccomp

package seccomp

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Argument numbers, x86_64 syscall ABI.
const (
	arg0 = 0
	arg1 = 1
	arg2 = 2
)

const all = ^uint64(0)

// nsFlags are clone's namespace flags. Unprivileged user namespaces are
// enabled on most hosts, and a user namespace gives the cell every other
// one: the filter, not the kernel's capability checks, must refuse them.
// (CLONE_NEWTIME is left out: in clone's first argument that bit belongs to
// the exit signal.)
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// sockTypeMask strips SOCK_NONBLOCK and SOCK_CLOEXEC from socket's type.
const sockTypeMask = 0xf

// allowRules returns the allow rules for a granted syscall. requested is
// whether the manifest asked for it (through a group or as an extra) rather
// than getting it from the base only. Every rule has at most one condition
// per argument: libcontainer ORs conditions on the same argument.
func allowRules(name string, requested bool) []Rule {
	switch name {
	case "clone":
		// From the base only: threads (the runtimes' only use). Requested
		// (@process or extra): processes too. Never a new namespace.
		if !requested {
			return []Rule{{Syscall: name, Action: ActAllow, Args: []Arg{
				{Index: arg0, Mask: nsFlags | unix.CLONE_THREAD, Value: unix.CLONE_THREAD},
			}}}
		}
		return []Rule{{Syscall: name, Action: ActAllow, Args: []Arg{
			{Index: arg0, Mask: nsFlags, Value: 0},
		}}}

	case "socket":
		// Unix, IPv4 and IPv6; stream and datagram; the default protocol or
		// the one the type implies. Leaves out netlink (the host's routing
		// and firewall), packet and raw sockets, and protocols such as SCTP
		// whose first use autoloads a kernel module.
		var rules []Rule
		add := func(domain, typ, proto uint64) {
			rules = append(rules, Rule{Syscall: name, Action: ActAllow, Args: []Arg{
				{Index: arg0, Mask: all, Value: domain},
				{Index: arg1, Mask: sockTypeMask, Value: typ},
				{Index: arg2, Mask: all, Value: proto},
			}})
		}
		add(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		add(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		for _, domain := range []uint64{unix.AF_INET, unix.AF_INET6} {
			add(domain, unix.SOCK_STREAM, 0)
			add(domain, unix.SOCK_STREAM, unix.IPPROTO_TCP)
			add(domain, unix.SOCK_DGRAM, 0)
			add(domain, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
		}
		return rules

	case "socketpair":
		var rules []Rule
		for _, typ := range []uint64{unix.SOCK_STREAM, unix.SOCK_DGRAM} {
			rules = append(rules, Rule{Syscall: name, Action: ActAllow, Args: []Arg{
				{Index: arg0, Mask: all, Value: unix.AF_UNIX},
				{Index: arg1, Mask: sockTypeMask, Value: typ},
				{Index: arg2, Mask: all, Value: 0},
			}})
		}
		return rules

	case "prlimit64":
		// Its own limits only (pid 0). glibc reads RLIMIT_STACK, Go raises
		// its RLIMIT_NOFILE soft limit; raising a hard limit needs a
		// capability the cell does not have.
		return []Rule{{Syscall: name, Action: ActAllow, Args: []Arg{{Index: arg0, Mask: all, Value: 0}}}}
	}
	return []Rule{{Syscall: name, Action: ActAllow}}
}

// probes are the calls libc and the Go runtime make to find out whether a
// feature exists, and do without when it does not. Unless the contract
// grants the syscall, the filter answers with the errno the runtime treats
// as "not available" instead of killing the cell. Measured on glibc 2.36
// static, musl 1.2.3 static and Go 1.26 (docs/notes/001-seccomp.md).
var probes = []Rule{
	// glibc >= 2.34 creates threads (and posix_spawn children) with clone3
	// and falls back to clone on ENOSYS; runc's init, a glibc program,
	// does too. clone3's flags are in memory the filter cannot read, so it
	// is never granted.
	{Syscall: "clone3", Action: ActErrno, Errno: syscall.ENOSYS},
	// glibc >= 2.35 registers restartable sequences for every thread and
	// carries on without them on ENOSYS.
	{Syscall: "rseq", Action: ActErrno, Errno: syscall.ENOSYS},
	// Go's io.Copy between files tries copy_file_range first and remembers
	// ENOSYS as "not supported".
	{Syscall: "copy_file_range", Action: ActErrno, Errno: syscall.ENOSYS},
	// glibc static start-up reads /proc/self/exe (for $ORIGIN); in the
	// sandbox it fails anyway, there is no /proc.
	{Syscall: "readlink", Action: ActErrno, Errno: syscall.EACCES},
	{Syscall: "readlinkat", Action: ActErrno, Errno: syscall.EACCES},
	// isatty: musl asks TIOCGWINSZ of stdout, glibc TCGETS. There is no
	// terminal in a sandbox, so ENOTTY is the truth.
	{Syscall: "ioctl", Action: ActErrno, Errno: syscall.ENOTTY, Args: []Arg{{Index: arg1, Mask: all, Value: unix.TCGETS}}},
	{Syscall: "ioctl", Action: ActErrno, Errno: syscall.ENOTTY, Args: []Arg{{Index: arg1, Mask: all, Value: unix.TIOCGWINSZ}}},
	// Go >= 1.25 names its anonymous mappings and ignores failure; EINVAL
	// is what a kernel without CONFIG_ANON_VMA_NAME answers.
	{Syscall: "prctl", Action: ActErrno, Errno: syscall.EINVAL, Args: []Arg{{Index: arg0, Mask: all, Value: unix.PR_SET_VMA}}},
}
