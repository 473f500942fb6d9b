package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state: ledger, sandboxes, monitor, who you are",
		Long: `Show tccd's version, kernel, cgroup mode, the number of cells you may see,
the ledger's size, sandboxes running and queued, whether the eBPF monitor is
available (and why not), and who tccd thinks you are: your user or token,
admin or not, tenant and scopes. Admins also see the state directory, the
socket and the trusted signers.`,
		Example: `  tccctl status
  TCC_TOKEN=$TOKEN tccctl status --json`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, s)
			}
			w := table(out)
			kv(w, "tccd", fmt.Sprintf("%s (pid %d, up since %s)", s.Version, s.PID, when(s.Started)))
			kv(w, "kernel", s.Kernel)
			kv(w, "cgroups", s.Cgroups)
			if s.Caller.Admin {
				kv(w, "state", s.StateDir)
				kv(w, "socket", s.Socket)
			}
			kv(w, "cells", s.Cells)
			if s.Caller.Admin {
				kv(w, "trusted signers", orDash(strings.Join(s.Trusted, ", ")))
			}
			kv(w, "ledger", fmt.Sprintf("%d events", s.Ledger.Size))
			if s.Ledger.KeyWarning != "" {
				kv(w, "WARNING", s.Ledger.KeyWarning)
			}
			kv(w, "sandboxes", fmt.Sprintf("%d running, %d queued (max %d, queue %d)", s.Sandboxes.Running, s.Sandboxes.Queued, s.Sandboxes.Max, s.Sandboxes.Queue))
			mon := "available"
			if !s.Monitor.Available {
				mon = "UNAVAILABLE: " + s.Monitor.Reason
			}
			kv(w, "monitor", mon)
			who := s.Caller.ID
			if s.Caller.Admin {
				who += " (admin)"
			}
			if s.Caller.Tenant != "" {
				who += ", tenant " + s.Caller.Tenant
			}
			kv(w, "you", who)
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}
