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

	"github.com/trustcells/tcc/daemon"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel"
)

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
		cfg       daemon.Config
		logLevel  string
		logFormat string
	)
	cmd := &cobra.Command{
		Use:   "tccd",
		Short: "TCC daemon: runs signed cells in throwaway sandboxes and audits every call",
		Long: `tccd is the TCC (Trusted Compute Cells) daemon. It runs as root on a Linux
appliance, owns the ledger (the cell catalogue and the tamper-evident audit
log) and runs every call of a cell in a throwaway sandbox: fresh namespaces,
a read-only root holding only the cell's files, no capabilities, cgroup
limits and a seccomp filter derived from the cell's signed manifest.

It listens on a Unix socket only. Callers are identified by their peer
credentials; root and the --admin-group are admins (register, rollback,
revoke). Stop it with SIGTERM or SIGINT: running calls are cancelled and
their sandboxes wiped before it exits.`,
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
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.StateDir, "state-dir", "/var/lib/tcc", "ledger, content-addressed store and sandbox state (root-only)")
	f.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "Unix socket for the control API and MCP")
	f.StringVar(&cfg.Trust, "trust", "/etc/tcc/trust", "trust file: verifier keys of accepted cell signers, one per line")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "/tcc", "absolute cgroup path for the sandboxes, in every hierarchy; orphans under it are removed at start")
	f.StringVar(&cfg.AdminGroup, "admin-group", "", "group (name or gid) whose members are admins besides root")
	f.StringVar(&cfg.LedgerKey, "ledger-key", "", "note signer key for ledger checkpoints (default <state-dir>/keys/ledger.key, created on first start)")
	f.IntVar(&cfg.MaxSandboxes, "max-sandboxes", 0, "concurrent sandboxes (default 2 per CPU)")
	f.IntVar(&cfg.MaxQueue, "max-queue", 64, "calls that may wait for a sandbox before callers get 'busy'")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}
