package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trustcells/tcc/kernel/peer"
)

// maxConnsPerUID caps the connections one local user other than root may
// hold open on the socket; past it, new ones are answered 503 and closed.
// Without it any user could pin the daemon's descriptors by the thousand.
const maxConnsPerUID = 128

// listenUnix listens on path, replacing a stale socket file left by a
// crashed daemon but refusing to steal one a live daemon answers on.
func listenUnix(path string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another tccd is answering on it; stop it or use --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Everyone may connect; who may do what is decided per request from the
	// peer's credentials.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket permissions: %w", err)
	}
	l.SetUnlinkOnClose(true)
	return &peerListener{Listener: l, log: log, open: map[uint32]int{}}, nil
}

// peerListener reads each connection's credentials once, when it is
// accepted (they are the kernel's record of the connecting process, not a
// lookup by its pid, which could be reused by anyone later), and caps the
// connections per uid.
type peerListener struct {
	net.Listener
	log *slog.Logger

	mu   sync.Mutex
	open map[uint32]int // uid → open connections
}

// overCap answers a connection past maxConnsPerUID before closing it, so
// that the client reads why instead of a reset.
const overCap = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" +
	`{"code":"busy","message":"too many connections from your user to tccd; close some and retry"}` + "\n"

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peer.Of(c)
		if err != nil {
			// Not expected on a Unix socket; without credentials the
			// connection could only be anonymous, which the socket is not.
			l.log.Warn("connection without peer credentials refused", logErr, err)
			c.Close()
			continue
		}
		if cred.UID != 0 && !l.take(cred.UID) {
			l.log.Warn("connection refused: too many from this user", "uid", cred.UID, "max", maxConnsPerUID)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte(overCap))
			c.Close()
			continue
		}
		return &peerConn{Conn: c, cred: cred, l: l}, nil
	}
}

func (l *peerListener) take(uid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[uid] >= maxConnsPerUID {
		return false
	}
	l.open[uid]++
	return true
}

func (l *peerListener) release(uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[uid]--; l.open[uid] <= 0 {
		delete(l.open, uid)
	}
}

// peerConn is an accepted connection with its peer's credentials.
type peerConn struct {
	net.Conn
	cred peer.Cred
	l    *peerListener
	once sync.Once
}

func (c *peerConn) Close() error {
	if c.cred.UID != 0 {
		c.once.Do(func() { c.l.release(c.cred.UID) })
	}
	return c.Conn.Close()
}

type ctxKey int

const peerKey ctxKey = iota

// connContext attaches the credentials read at accept to every request of
// a connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerKey, pc.cred)
	}
	return ctx
}

func peerOf(ctx context.Context) (peer.Cred, bool) {
	c, ok := ctx.Value(peerKey).(peer.Cred)
	return c, ok
}
