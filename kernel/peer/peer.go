// Package peer reads the credentials of the process at the other end of a
// Unix socket: SO_PEERCRED (pid, uid, gid) and SO_PEERGROUPS (supplementary
// groups). The kernel records both when the peer connects, so they cannot be
// forged by the peer and do not change when its process exits or its pid is
// reused; they are the daemon's only proof of who a local caller is. It must
// never trust anything the peer sends about itself, nor look a peer up by
// its pid (a pid outlives nothing).
package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cred is a peer's identity as the kernel recorded it at connect time.
type Cred struct {
	PID    int32 // for logs only: the process may be gone and the pid reused
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
}

func (c Cred) String() string { return fmt.Sprintf("uid:%d", c.UID) }

// ErrNotUnix is returned for connections that are not Unix sockets.
var ErrNotUnix = errors.New("peer credentials need a Unix socket")

// Of returns the credentials of conn's peer. Call it once, when the
// connection is accepted, and keep the result with the connection.
func Of(conn net.Conn) (Cred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Cred{}, ErrNotUnix
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred Cred
		serr error
	)
	if err := raw.Control(func(fd uintptr) {
		var u *unix.Ucred
		if u, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr != nil {
			serr = os.NewSyscallError("getsockopt SO_PEERCRED", serr)
			return
		}
		cred = Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}
		cred.Groups, serr = peerGroups(int(fd))
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, serr
	}
	return cred, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+), growing the buffer when
// the kernel says it is too small (ERANGE, with the size it needs).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for {
		n := uint32(len(buf) * 4)
		var err error
		for {
			_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
			if e != unix.EINTR {
				if e != 0 {
					err = e
				}
				break
			}
		}
		switch {
		case err == unix.ERANGE && int(n/4) > len(buf):
			buf = make([]uint32, n/4)
		case err != nil:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", err)
		default:
			return buf[: n/4 : n/4], nil
		}
	}
}
