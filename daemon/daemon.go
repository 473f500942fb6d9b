package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	LedgerKey  string // note signer key for checkpoints; default <state>/keys/ledger.key, created if missing

	CgroupParent string // absolute cgroup path of all sandboxes; default /tcc

	MaxSandboxes int // concurrent sandboxes; default 2 per CPU
	MaxQueue     int // calls waiting for a sandbox before "busy"; default 64

	ListenTCP string // optional loopback address for MCP over HTTP (mcp.go)
	Tenants   string // tenants and scopes config file (auth.go)

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
	NoMonitor           bool
	MonitorPairsPerCell uint32

	// BlobCap bounds the bytes of call inputs and outputs kept for replay
	// (default 1 GiB; negative keeps none). BlobRetention is how long one
	// is kept after its last call (default 30 days; negative: until the
	// cap evicts it). See ledgerapi.go.
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
	tokenKey *tokenKey   // tokens.go: bearer token signing key
	mcp      *mcp.Server // mcp.go: the MCP endpoint
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
	signer, err := loadOrCreateLedgerKey(cfg.LedgerKey)
	if err != nil {
		return err
	}

	d.ledger, err = ledger.Open(ctx, ledger.Options{
		Dir:    filepath.Join(cfg.StateDir, "ledger"),
		Signer: signer,
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

	l, err := listenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           d.routes(),
		ConnContext:       connContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },

		// Without it an idle keep-alive connection is held for ever: any
		// local user could pin the daemon's descriptors by the thousand.
		IdleTimeout: 2 * time.Minute,
	}
	startAttrs := map[string]string{"version": Version, "pid": strconv.Itoa(os.Getpid())}
	if cfg.UnsafeTestProfiles {
		startAttrs["unsafe_test_profiles"] = "true"
	}
	if _, err := d.ledger.Append(ctx, &ledger.Event{Type: "daemon.start", Attrs: startAttrs}); err != nil {
		l.Close()
		return fmt.Errorf("record start: %w", err)
	}
	d.log.Info("tccd ready", "socket", cfg.Socket, "state", cfg.StateDir, "trusted", d.trust.Load().names)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
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
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	d.log.Info("tccd stopping")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		d.log.Warn("shutdown: connections still open", "err", err)
		srv.Close()
	}
	d.flushBaselines(shutCtx) // monitorapi.go: refinements not yet recorded
	if _, err := d.ledger.Append(shutCtx, &ledger.Event{Type: "daemon.stop"}); err != nil {
		d.log.Error("record stop", "err", err)
	}
	return nil
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
		d.log.Error("trust file reload failed; keeping the keys trusted before", "trust", d.cfg.Trust, "err", err, "trusted", old.names)
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
// first start.
func loadOrCreateLedgerKey(path string) (note.Signer, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		dir, base := filepath.Split(path)
		name := base[:len(base)-len(filepath.Ext(base))]
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("ledger key: %w", err)
		}
		if _, _, err := keys.Generate(name, dir); err != nil {
			return nil, fmt.Errorf("ledger key: %w", err)
		}
	}
	s, err := keys.LoadSigner(path)
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	return s, nil
}
