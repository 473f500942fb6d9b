package attack

import (
	"errors"
	"strconv"
	"syscall"
)

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
	syscall.E2BIG: "E2BIG", syscall.EBADF: "EBADF", syscall.ECHILD: "ECHILD",
	syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM", syscall.EACCES: "EACCES",
	syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST",
	syscall.EXDEV: "EXDEV", syscall.ENODEV: "ENODEV", syscall.ENOTDIR: "ENOTDIR",
	syscall.EISDIR: "EISDIR", syscall.EINVAL: "EINVAL", syscall.ENFILE: "ENFILE",
	syscall.EMFILE: "EMFILE", syscall.ENOSPC: "ENOSPC", syscall.EROFS: "EROFS",
	syscall.EMLINK: "EMLINK", syscall.ENOSYS: "ENOSYS", syscall.ENOTEMPTY: "ENOTEMPTY",
	syscall.ELOOP: "ELOOP", syscall.ENAMETOOLONG: "ENAMETOOLONG", syscall.ENOKEY: "ENOKEY",
	syscall.EKEYREVOKED: "EKEYREVOKED", syscall.EKEYEXPIRED: "EKEYEXPIRED",
	syscall.EKEYREJECTED: "EKEYREJECTED", syscall.EDQUOT: "EDQUOT",
	syscall.EUSERS: "EUSERS", syscall.EOPNOTSUPP: "EOPNOTSUPP",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT", syscall.ESOCKTNOSUPPORT: "ESOCKTNOSUPPORT",
	syscall.EAFNOSUPPORT: "EAFNOSUPPORT", syscall.EADDRINUSE: "EADDRINUSE",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ENETDOWN: "ENETDOWN",
	syscall.ENETUNREACH: "ENETUNREACH", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.ECONNRESET: "ECONNRESET", syscall.ETIMEDOUT: "ETIMEDOUT",
	syscall.EHOSTUNREACH: "EHOSTUNREACH", syscall.ENOTSOCK: "ENOTSOCK",
	syscall.EPROTOTYPE: "EPROTOTYPE", syscall.ENOTTY: "ENOTTY", syscall.ETXTBSY: "ETXTBSY",
}

// errnoName is the symbolic name of the errno inside err ("EPERM"), or a
// short description when err carries none (a timeout, for instance).
func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n, ok := errnoNames[en]; ok {
			return n
		}
		return "errno " + strconv.Itoa(int(en))
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return "ETIMEDOUT"
	}
	return "error"
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGSYS: "SIGSYS", syscall.SIGKILL: "SIGKILL", syscall.SIGSEGV: "SIGSEGV",
	syscall.SIGABRT: "SIGABRT", syscall.SIGTERM: "SIGTERM", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGBUS: "SIGBUS",
}

func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}
