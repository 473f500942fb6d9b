package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/keys"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// Version is tccd's version, set at link time.
var Version = "dev"

// Config is tccd's configuration; zero values take the documented defaults.
type Config struct {
	StateDir   string // default /var/lib/tcc
	Socket     string // default /run/tcc/tcc.sock
	Trust      string // default /etc/tcc/trust: verifier keys of accepted signers
	AdminGroup string // group whose members are admins besides root ("" = root only)
	LedgerKey  string // note signer key for checkpoints; default <state>/keys/tcc-ledger.key, created on the first start only

	CgroupParent string // absolute cgroup path of all sandboxes; default /tcc

	MaxSandboxes int // concurrent sandboxes; default 2 per CPU
	MaxQueue     int // calls waiting for a sandbox before "busy"; default 64

	ListenTCP string // optional loopback address for MCP over HTTP (mcp.go)
	Tenants   string // tenants and scopes config file (tenants.go)

	// Reload, if set, re-reads the trust and tenants files at every
	// receive (tccd wires SIGHUP to it). A file that does not parse keeps
	// what was loaded before.
	Reload <-chan os.Signal

	// UnsafeTestProfiles compiles seccomp profiles without the forbidden
	// list or argument narrowing (kernel.Config.UnsafeTestProfiles), so
	// adversarial tests can reach the namespace and capability checks.
	// Never for production: only a tccd built with the tcc_unsafe_test tag
	// has it, and tccd refuses it without TCC_UNSAFE_TEST=1.
	UnsafeTestProfiles bool

	// NoMonitor runs cells without the eBPF behaviour monitor (seccomp,
	// namespaces and limits still hold); MonitorPairsPerCell caps the
	// syscall pairs it records per cell (0: default). See monitorapi.go.
	// MonitorIdleDetach: kernel.Config.MonitorIdleDetach.
	NoMonitor           bool
	MonitorPairsPerCell uint32
	MonitorIdleDetach   time.Duration

	// BlobCap bounds the bytes of call inputs and outputs kept for replay
	// (0 keeps none); BlobRetention is how long one is kept after its last
	// use (0: until the cap evicts it). Unlike the fields above, zero means
	// what it says; tccd's flags default to DefaultBlobCap and
	// DefaultBlobRetention. See ledgerapi.go.
	BlobCap       int64
	BlobRetention time.Duration

	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/tcc"
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.Trust == "" {
		c.Trust = "/etc/tcc/trust"
	}
	if c.LedgerKey == "" {
		c.LedgerKey = filepath.Join(c.StateDir, "keys", "tcc-ledger.key")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Daemon is a running tccd.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	started  time.Time
	adminGID int64 // -1 when no admin group

	ledger *ledger.Ledger
	kernel *kernel.Kernel
	trust  atomic.Pointer[trustSet]
	mon    monitorState // monitorapi.go: baselines being refined
	audit  auditState   // ledgerapi.go: verifier key, blob store

	tenants  atomic.Pointer[tenants] // tenants.go: who is in which tenant (set before serving, swapped on SIGHUP)
	tokenKey *tokenKey               // tokens.go: bearer token signing key
	mcp      *mcp.Server             // mcp.go: the MCP endpoint
	tcp      net.Listener            // mcp.go: the loopback TCP listener, if any
	work     inflight                // serve.go: requests and calls in flight
	bodies   bodyBudget              // http.go: run inputs held in flight
}

// trustSet is the parsed trust file.
type trustSet struct {
	verifiers note.Verifiers
	names     []string
}

// Run starts tccd and serves until ctx is cancelled, then shuts down
// cleanly: running calls are cancelled (their sandboxes wiped), the ledger
// records the stop and is closed, the socket is removed.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	d := &Daemon{cfg: cfg, log: cfg.Logger, started: time.Now(), adminGID: -1}
	if os.Geteuid() != 0 {
		return errors.New("tccd must run as root: it creates namespaces, cgroups and seccomp filters")
	}
	if cfg.AdminGroup != "" {
		gid, err := lookupGroup(cfg.AdminGroup)
		if err != nil {
			return err
		}
		d.adminGID = gid
	}
	// 0711: a user-namespaced sandbox's init must walk through to its
	// rootfs; nobody but root can list anything. The ledger and the object
	// store below are 0700.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := d.loadTrust(); err != nil {
		return err
	}
	if cfg.UnsafeTestProfiles {
		d.log.Warn("UNSAFE TEST PROFILES: seccomp filters are compiled without the forbidden list or argument narrowing; this daemon is for adversarial tests only, never production")
	}
	ledgerDir := filepath.Join(cfg.StateDir, "ledger")
	key, err := loadOrCreateLedgerKey(cfg.LedgerKey, ledgerDir)
	if err != nil {
		return err
	}
	d.audit.verifier = key.Public // ledgerapi.go

	d.ledger, err = ledger.Open(ctx, ledger.Options{
		Dir:      ledgerDir,
		Signer:   key.Signer,
		Verifier: key.Verifier,
	})
	if err != nil {
		return err
	}
	defer d.ledger.Close()

	d.kernel, err = kernel.New(ctx, kernel.Config{
		StateDir:            filepath.Join(cfg.StateDir, "sandboxes"),
		CgroupParent:        cfg.CgroupParent,
		MaxSandboxes:        cfg.MaxSandboxes,
		MaxQueue:            cfg.MaxQueue,
		UnsafeTestProfiles:  cfg.UnsafeTestProfiles,
		NoMonitor:           cfg.NoMonitor,
		MonitorPairsPerCell: cfg.MonitorPairsPerCell,
		MonitorIdleDetach:   cfg.MonitorIdleDetach,
		Catalog:             catalog{d},
		Trust:               func() note.Verifiers { return d.trust.Load().verifiers },
		Logger:              d.log,
	})
	if err != nil {
		return err
	}
	defer d.kernel.Close()

	for _, start := range []func(context.Context) (func(), error){d.initAudit, d.initMonitor, d.initMCP} {
		stop, err := start(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}

	l, err := listenUnix(cfg.Socket, d.log)
	if err != nil {
		return err
	}
	// Requests run under serveCtx: cancelled when tccd stops, which ends
	// streams and cancels calls (their sandboxes killed and wiped).
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	servers := []*server{d.newServer(serveCtx, "socket", l, d.routes(), connContext)}
	if d.tcp != nil {
		servers = append(servers, d.newServer(serveCtx, "tcp", d.tcp, d.tcpRoutes(), func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, tcpKey{}, true)
		}))
	}
	startAttrs := map[string]string{"version": Version, "pid": strconv.Itoa(os.Getpid())}
	if cfg.UnsafeTestProfiles {
		startAttrs["unsafe_test_profiles"] = "true"
	}
	// Recorded before anything is served, so that no request's event can
	// come before it.
	if _, err := d.ledger.Append(ctx, &ledger.Event{Type: ledger.TypeDaemonStart, Attrs: startAttrs}); err != nil {
		for _, s := range servers {
			s.l.Close()
		}
		return fmt.Errorf("record start: %w", err)
	}
	// Logged before serving: whoever waits for an answer on the socket
	// finds the TCP address in the log already.
	if d.tcp != nil {
		d.log.Info("MCP listening on loopback TCP", "addr", d.tcp.Addr().String(), "url", "http://"+d.tcp.Addr().String()+"/mcp")
	}
	d.log.Info("tccd ready", "socket", cfg.Socket, "state", cfg.StateDir, "trusted", d.trust.Load().names)
	errc := make(chan error, len(servers))
	for _, s := range servers {
		s.serve(errc)
	}

	if cfg.Reload != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-cfg.Reload:
					d.reloadTrust()
					d.reloadTenants()
				}
			}
		}()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
		stopServing()
	case <-ctx.Done():
	}
	d.log.Info("tccd stopping")
	// Stop serving, end MCP sessions, wait for the calls in flight (their
	// contexts are cancelled: sandboxes killed and wiped, call.end
	// written), record the refined baselines, and only then daemon.stop;
	// the deferred closes of the kernel and the ledger come after.
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	d.stop(shutCtx, servers)
	d.flushBaselines(shutCtx) // monitorapi.go: refinements not yet recorded
	if _, err := d.ledger.Append(shutCtx, &ledger.Event{Type: ledger.TypeDaemonStop}); err != nil {
		d.log.Error("record stop", logErr, err)
	}
	return serveErr
}

func lookupGroup(name string) (int64, error) {
	if gid, err := strconv.ParseInt(name, 10, 32); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("--admin-group %q: %w", name, err)
	}
	return strconv.ParseInt(g.Gid, 10, 32)
}

// loadTrust (re)reads the trust file. A missing file is an empty trust set:
// the daemon runs but refuses every registration, and says why.
func (d *Daemon) loadTrust() error {
	vs, names, err := keys.LoadTrust(d.cfg.Trust)
	if errors.Is(err, os.ErrNotExist) {
		d.log.Warn("no trust file: every registration will be refused until it exists", "trust", d.cfg.Trust)
		d.trust.Store(&trustSet{verifiers: note.VerifierList()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("trust file: %w", err)
	}
	d.trust.Store(&trustSet{verifiers: vs, names: names})
	return nil
}

// reloadTrust re-reads the trust file while the daemon runs. The gate
// checks every launch against the keys trusted at that moment, so a key
// removed here stops its cells at their next call. A file that cannot be
// read or parsed keeps the old trust set; a missing file trusts nothing,
// as at start.
func (d *Daemon) reloadTrust() {
	old := d.trust.Load()
	if err := d.loadTrust(); err != nil {
		d.log.Error("trust file reload failed; keeping the keys trusted before", "trust", d.cfg.Trust, logErr, err, "trusted", old.names)
		return
	}
	now := d.trust.Load()
	var added, removed []string
	for _, n := range now.names {
		if !slices.Contains(old.names, n) {
			added = append(added, n)
		}
	}
	for _, n := range old.names {
		if !slices.Contains(now.names, n) {
			removed = append(removed, n)
		}
	}
	d.log.Info("trust file reloaded", "trust", d.cfg.Trust, "trusted", now.names, "added", added, "removed", removed)
}

// loadOrCreateLedgerKey loads the checkpoint signer key, creating it on
// the first start. Once a ledger exists in ledgerDir it never creates one:
// a new key could not vouch for what the old one signed (ledger.Open would
// refuse it anyway), and a missing key is for the operator to restore.
func loadOrCreateLedgerKey(path, ledgerDir string) (*keys.SignerKey, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(ledgerDir, "db")); err == nil {
			return nil, fmt.Errorf("ledger key %s is missing, but the ledger in %s exists and its checkpoints were signed with that key: restore the key file, or give its path with --ledger-key; tccd makes a new key only for a new ledger", path, ledgerDir)
		}
		dir, base := filepath.Split(path)
		name := base[:len(base)-len(filepath.Ext(base))]
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("ledger key: %w", err)
		}
		if _, _, err := keys.Generate(name, dir); err != nil {
			return nil, fmt.Errorf("ledger key: %w", err)
		}
	}
	k, err := keys.LoadSignerKey(path)
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	return k, nil
}
