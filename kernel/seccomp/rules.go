//go:build cgo && seccomp

package seccomp

import (
	"slices"
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

// fcntlBase are the fcntl commands the base grants: descriptor flags and
// duplication, which Go, glibc, musl and runc's init use (measured, note
// 001). Left out, among others: record locks (F_SETLK, F_OFD_SETLK,
// F_GETLK) and leases, which act on the inode, and a cell's /cell files are
// the same inodes in every concurrent call of the same code: a channel
// between calls. A contract that names fcntl gets all of it.
var fcntlBase = []uint64{unix.F_DUPFD, unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL, unix.F_DUPFD_CLOEXEC}

// rlimitsBut lists every resource limit but skip.
func rlimitsBut(skip uint64) []uint64 {
	var out []uint64
	for r := uint64(0); r <= unix.RLIMIT_RTTIME; r++ { // RLIMIT_RTTIME is the last (RLIM_NLIMITS 16)
		if r != skip {
			out = append(out, r)
		}
	}
	return out
}

// allowRules returns the allow rules for a granted syscall. requested is
// whether the manifest asked for it (through a group or as an extra) rather
// than getting it from the base only. Every rule has at most one condition
// per argument (see Profile.Config), and every condition is an equality on
// the whole 64-bit argument or a mask of it: a "not equal" test would let
// through a value whose upper 32 bits the kernel then drops (most of these
// arguments are ints).
func allowRules(name string, requested bool) []Rule {
	// each returns one rule per value of argument idx, all with the
	// conditions in also.
	each := func(idx uint, values []uint64, also ...Arg) []Rule {
		rules := make([]Rule, 0, len(values))
		for _, v := range values {
			rules = append(rules, Rule{Syscall: name, Action: ActAllow, Args: append(slices.Clone(also), Arg{Index: idx, Mask: all, Value: v})})
		}
		return rules
	}
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

	case "fcntl":
		if requested {
			break
		}
		return each(arg1, fcntlBase)

	case "prlimit64":
		// Its own limits only (pid 0), reading any (new limit NULL): glibc
		// and musl read RLIMIT_STACK, Go reads RLIMIT_NOFILE. Setting:
		// from the base only RLIMIT_NOFILE (Go raises its soft limit);
		// requested, any limit but RLIMIT_CORE, whose value 1 keeps core
		// dumps from reaching a |helper on the host (kernel/sandbox).
		// Raising a hard limit needs a capability the cell does not have.
		pid0 := Arg{Index: arg0, Mask: all, Value: 0}
		read := Rule{Syscall: name, Action: ActAllow, Args: []Arg{pid0, {Index: arg2, Mask: all, Value: 0}}}
		set := []uint64{unix.RLIMIT_NOFILE}
		if requested {
			set = rlimitsBut(unix.RLIMIT_CORE)
		}
		return append([]Rule{read}, each(arg1, set, pid0)...)

	case "setrlimit":
		// Never RLIMIT_CORE (see prlimit64).
		return each(arg0, rlimitsBut(unix.RLIMIT_CORE))

	case "memfd_create":
		// Only sealed against execution (MFD_NOEXEC_SEAL, Linux 6.3; older
		// kernels answer EINVAL): a memfd a cell wrote could otherwise be
		// exec'd (execveat, /proc/self/fd) and run code nobody signed.
		return []Rule{{Syscall: name, Action: ActAllow, Args: []Arg{
			{Index: arg1, Mask: unix.MFD_NOEXEC_SEAL | unix.MFD_EXEC, Value: unix.MFD_NOEXEC_SEAL},
		}}}
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
