// Command tccd is the TCC daemon: it runs as root, owns the ledger and every
// sandbox, and serves the control API and MCP on a Unix socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
)

// unsafeTestEnv must be "1" for --unsafe-test-profiles to be accepted, so
// that the flag cannot slip into a production unit file on its own.
const unsafeTestEnv = "TCC_UNSAFE_TEST"

func main() {
	// The sandbox's init re-executes this binary; it must not get further.
	kernel.Init()
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tccd:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var (
		cfg         daemon.Config
		blobCapFlag string
		logLevel    string
		logFormat   string
	)
	cmd := &cobra.Command{
		Use:   "tccd",
		Short: "TCC daemon: runs signed cells in throwaway sandboxes and audits every call",
		Long: `tccd is the TCC (Trusted Compute Cells) daemon. It runs as root on a Linux
appliance, owns the ledger (the cell catalogue and the tamper-evident audit
log) and runs every call of a cell in a throwaway sandbox: fresh namespaces,
a read-only root holding only the cell's files, no capabilities, cgroup
limits and a seccomp filter derived from the cell's signed manifest.

It listens on a Unix socket (control API and MCP at /mcp), and with
--listen-tcp also serves /mcp on a loopback address. Callers are identified
by their peer credentials or a bearer token (tccctl token issue); root and
the --admin-group are admins (register, rollback, revoke), --tenants maps
other users to a tenant and MCP scopes. Stop it with SIGTERM or SIGINT: running calls are cancelled and
their sandboxes wiped before it exits. SIGHUP re-reads the trust file and
the tenants file (one that does not parse is logged and the previous one
kept); tokens of a tenant no longer in the tenants file are refused.`,
		Example: `  tccd --trust /etc/tcc/trust
  tccd --state-dir /tmp/tcc --socket /tmp/tcc.sock --trust dev.pub`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			opts := &slog.HandlerOptions{Level: lvl}
			var h slog.Handler
			switch logFormat {
			case "text":
				h = slog.NewTextHandler(os.Stderr, opts)
			case "json":
				h = slog.NewJSONHandler(os.Stderr, opts)
			default:
				return errors.New(`--log-format: want "text" or "json"`)
			}
			cfg.Logger = slog.New(h)
			if err := daemon.CheckListenTCP(cfg.ListenTCP); err != nil {
				return err // before anything is created
			}
			bc, err := blobCap(blobCapFlag)
			if err != nil {
				return err
			}
			cfg.BlobCap = bc
			if cfg.UnsafeTestProfiles && os.Getenv(unsafeTestEnv) != "1" {
				return errors.New("--unsafe-test-profiles weakens every seccomp filter and is for adversarial tests only; it is refused unless " + unsafeTestEnv + "=1 is also set in the environment. Never use it in production")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// SIGHUP re-reads the trust and tenants files; a key removed
			// from the trust file stops its cells at their next launch.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg.Reload = hup
			return daemon.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.StateDir, "state-dir", "/var/lib/tcc", "ledger, content-addressed store and sandbox state (root-only)")
	f.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "Unix socket for the control API and MCP")
	f.StringVar(&cfg.Trust, "trust", "/etc/tcc/trust", "trust file: verifier keys of accepted cell signers, one per line")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "/tcc", "absolute cgroup path for the sandboxes, in every hierarchy; orphans under it are removed at start")
	f.StringVar(&cfg.AdminGroup, "admin-group", "", "group (name or gid) whose members are admins besides root")
	f.StringVar(&cfg.Tenants, "tenants", "", "tenants file (YAML): local users and groups → tenant and MCP scopes; see docs/MCP.md")
	f.StringVar(&cfg.ListenTCP, "listen-tcp", "", "also serve MCP (only /mcp) on this loopback address, e.g. 127.0.0.1:8765; other addresses are refused")
	f.StringVar(&cfg.LedgerKey, "ledger-key", "", "note signer key for ledger checkpoints (default <state-dir>/keys/tcc-ledger.key, created on the first start only; keep it off the state disk)")
	f.IntVar(&cfg.MaxSandboxes, "max-sandboxes", 0, "concurrent sandboxes (default 2 per CPU)")
	f.IntVar(&cfg.MaxQueue, "max-queue", 64, "calls that may wait for a sandbox before callers get 'busy'")
	f.StringVar(&blobCapFlag, "blob-cap", "1GiB", "bytes of call inputs and outputs kept for 'tccctl ledger replay' (oldest evicted first); 0 keeps none")
	f.DurationVar(&cfg.BlobRetention, "blob-retention", daemon.DefaultBlobRetention, "how long a call's input and output are kept for replay; 0 keeps them until --blob-cap evicts them")
	f.BoolVar(&cfg.NoMonitor, "no-monitor", false, "run cells without the eBPF behaviour monitor (seccomp, namespaces and limits still hold; calls record monitor unavailable)")
	// Hidden, for tests: a tiny value makes the monitor lose events (and halt cells).
	f.Uint32Var(&cfg.MonitorPairsPerCell, "monitor-pairs-per-cell", 0, "TESTS: distinct syscall pairs the monitor records per cell (default 2048); a cell past it is halted")
	_ = f.MarkHidden("monitor-pairs-per-cell")
	f.DurationVar(&cfg.MonitorIdleDetach, "monitor-idle-detach", monitor.DefaultIdleDetach, "detach the monitor's BPF programs after this long without a running cell, so idle host syscalls do not pay for them; the next call attaches them again (about 1 ms); negative keeps them attached")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	// Hidden and never for production: see daemon.Config.UnsafeTestProfiles.
	f.BoolVar(&cfg.UnsafeTestProfiles, "unsafe-test-profiles", false, "TESTS ONLY: compile seccomp filters without the forbidden list or argument narrowing (needs "+unsafeTestEnv+"=1 and a tccd built with -tags tcc_unsafe_test)")
	_ = f.MarkHidden("unsafe-test-profiles")
	return cmd
}

// blobCap parses --blob-cap: a size such as 512MiB, or 0 to keep nothing.
func blobCap(s string) (int64, error) {
	if s == "0" {
		return 0, nil
	}
	n, err := manifest.ParseSize(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--blob-cap %q: want a size such as 512MiB or 2GiB, or 0 to keep nothing", s)
	}
	return int64(n), nil
}
