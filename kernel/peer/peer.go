// Package peer reads the credentials of the process at the other end of a
// Unix socket (SO_PEERCRED). The kernel fills them in at connect time, so
// they cannot be forged by the peer; they are the daemon's only proof of who
// a local caller is. It must never trust anything the peer sends about
// itself.
package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Cred is a peer's identity as the kernel recorded it at connect time.
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

func (c Cred) String() string { return fmt.Sprintf("uid:%d", c.UID) }

// ErrNotUnix is returned for connections that are not Unix sockets.
var ErrNotUnix = errors.New("peer credentials need a Unix socket")

// Of returns the credentials of conn's peer.
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
		ucred *unix.Ucred
		serr  error
	)
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, os.NewSyscallError("getsockopt SO_PEERCRED", serr)
	}
	return Cred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid}, nil
}

// Groups returns the supplementary groups of the peer's process, read from
// /proc/PID/status. The peer may have exited; that is an error, and callers
// treat it as "no groups".
func Groups(c Cred) ([]uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.PID))
	if err != nil {
		return nil, err
	}
	return parseGroups(b), nil
}

func parseGroups(status []byte) []uint32 {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range strings.Fields(rest) {
			if g, err := strconv.ParseUint(f, 10, 32); err == nil {
				out = append(out, uint32(g))
			}
		}
		return out
	}
	return nil
}
