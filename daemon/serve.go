package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/ledger"
)

// Timeouts of both HTTP servers. There is no server-wide ReadTimeout or
// WriteTimeout: they would cut followed event streams, MCP streams and long
// calls; request bodies get a per-request deadline instead (readBody).
const (
	readHeaderTimeout = 10 * time.Second
	// Without it an idle keep-alive connection is held for ever: any local
	// user could pin the daemon's descriptors by the thousand.
	idleTimeout = 2 * time.Minute
	// stopTimeout bounds the whole stop: servers, work in flight.
	stopTimeout = 30 * time.Second
	// maxTCPConns caps the connections of the loopback TCP listener, which
	// has no peer credentials to count by.
	maxTCPConns = 256
)

// errStopping refuses work that starts while tccd stops.
var errStopping = &httpError{http.StatusServiceUnavailable, api.CodeUnavailable, fmt.Errorf("tccd is stopping: %w", ledger.ErrClosed)}

// inflight counts the work that may append to the ledger (requests, calls,
// vault reads), so that daemon.stop is the last event: once closed, it
// refuses new work and waits for what runs.
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0 after close
}

// enter counts one piece of work; false once stopping.
func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// close refuses new work and waits until none runs, or ctx is done.
func (f *inflight) close(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	idle := make(chan struct{})
	f.idle = idle
	n := f.n
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d requests or calls still running: %w", n, ctx.Err())
	}
}

// counted wraps h so that its requests are work in flight.
func (d *Daemon) counted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.work.enter() {
			writeJSON(w, http.StatusServiceUnavailable, &api.Error{Code: api.CodeUnavailable, Message: errStopping.Error()})
			return
		}
		defer d.work.leave()
		h.ServeHTTP(w, r)
	})
}

// server is one HTTP server of the daemon on its listener.
type server struct {
	name string
	srv  *http.Server
	l    net.Listener
}

// newServer builds a server whose requests run under ctx (cancelled when
// tccd stops, which ends streams and cancels calls).
func (d *Daemon) newServer(ctx context.Context, name string, l net.Listener, h http.Handler, connCtx func(context.Context, net.Conn) context.Context) *server {
	return &server{name: name, l: l, srv: &http.Server{
		Handler:           d.counted(h),
		ConnContext:       connCtx,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}}
}

// serve serves s until it is shut down; a failure is sent on errc.
func (s *server) serve(errc chan<- error) {
	go func() {
		if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve %s: %w", s.name, err)
		}
	}()
}

// stop shuts the servers down, then waits for the work in flight (calls
// of stateful MCP sessions run outside any request), so that nothing
// appends to the ledger after it returns.
func (d *Daemon) stop(ctx context.Context, servers []*server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil {
				d.log.Warn("shutdown: connections still open; closing them", "server", s.name, logErr, err)
				s.srv.Close()
			}
		})
	}
	wg.Wait()
	if d.mcp != nil {
		d.mcp.Close() // ends MCP sessions: their calls are cancelled
	}
	if err := d.work.close(ctx); err != nil {
		d.log.Error("shutdown: work still in flight; stopping anyway", logErr, err)
	}
}

// limitListener accepts at most n connections at once; past that, Accept
// waits for one to close.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
