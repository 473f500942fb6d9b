package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/trustcells/tcc/kernel/peer"
)

// listenUnix listens on path, replacing a stale socket file left by a
// crashed daemon but refusing to steal one a live daemon answers on.
func listenUnix(path string) (*net.UnixListener, error) {
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
	return l, nil
}

type ctxKey int

const peerKey ctxKey = iota

// connContext attaches the peer's credentials to every request of a
// connection. A connection whose credentials cannot be read gets none and is
// treated as anonymous.
func connContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peer.Of(c)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey, cred)
}

func peerOf(ctx context.Context) (peer.Cred, bool) {
	c, ok := ctx.Value(peerKey).(peer.Cred)
	return c, ok
}
