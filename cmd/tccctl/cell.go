package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
)

func newCellCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cell",
		Short: "Pack, sign, verify, register and inspect cells",
		Long: `A cell is a capsule: a directory (or a .cell tar of it) holding cell.yaml, the
manifest that is the cell's execution contract, its static binary, optional
read-only data files and cell.sig, the signature.

Local verbs work on capsules on disk: pack, sign, verify, inspect (of a path).
The others ask tccd.`,
	}
	cmd.AddCommand(
		newCellPackCmd(g),
		newCellSignCmd(g),
		newCellVerifyCmd(g),
		newCellInspectCmd(g),
		newCellRegisterCmd(g),
		newCellListCmd(g),
		newCellLineageCmd(g),
		newCellRollbackCmd(g),
		newCellRevokeCmd(g),
		newCellSyscallsCmd(g),
		newCellProfileCmd(g), // profile.go
		newCellAdviseCmd(g),  // profile.go
	)
	return cmd
}

func newCellListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered cells: each name with its head",
		Long: `List every cell name you may see (shared ones and your tenant's; admins see
all), with its head identity, phase, number of versions, tenant and when the
head was registered. A name whose every version is revoked has no head.`,
		Example: `  tccctl cell list
  tccctl cell list --json`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cells, err := g.client().Cells(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, cells)
			}
			w := table(out)
			fmt.Fprintln(w, "NAME\tHEAD\tPHASE\tVERSIONS\tTENANT\tREGISTERED")
			for _, c := range cells {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, short(orDash(c.Head)), c.Phase, c.Versions, orDash(c.Tenant), when(c.RegisteredAt))
			}
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newCellLineageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lineage NAME",
		Short: "Show every identity a cell name has had, oldest first, and head moves",
		Long: `Show NAME's history: every identity registered under it (oldest first, with
its parent, the ledger event that registered it, and whether it is the head
or revoked), then each rollback or revocation that moved the head. Versions
of another tenant are left out.`,
		Example: `  tccctl cell lineage sha256
  tccctl cell lineage sha256 --json`,
		Args: args("NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			l, err := g.client().Lineage(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, l)
			}
			w := table(out)
			fmt.Fprintln(w, "\tIDENTITY\tPARENT\tSEQ\tREGISTERED\tSTATE")
			for _, e := range l.Entries {
				mark, state := "", ""
				if e.Head {
					mark, state = "*", "head"
				}
				if e.Revoked {
					state = "revoked"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", mark, e.Identity, short(orDash(e.Parent)), e.Seq, when(e.RegisteredAt), state)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, m := range l.Moves {
				to := m.To
				if to == "" {
					to = "(no head)"
				}
				fmt.Fprintf(out, "event %d %s: head %s -> %s at %s\n", m.Seq, m.Kind, short(m.From), short(to), when(m.At))
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newCellRollbackCmd(g *globals) *cobra.Command {
	var changeTenant bool
	cmd := &cobra.Command{
		Use:   "rollback NAME IDENTITY",
		Short: "Move a name's head back to an earlier identity (recorded; history is kept)",
		Long: `Move NAME's head back to IDENTITY, an earlier registered, unrevoked identity
of the same name. The move is an event in the ledger; nothing is deleted, and
a later registration must name the new head as its parent. Moving to an
identity of another tenant than the head's needs --change-tenant. Admin only.`,
		Example: `  tccctl cell rollback sha256 sha256:3f2a
  tccctl cell rollback json-query sha256:9c1e --change-tenant`,
		Args: args("NAME", "IDENTITY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			m, err := g.client().RollbackAs(cmd.Context(), a[0], api.RollbackRequest{To: a[1], ChangeTenant: changeTenant})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: head %s -> %s (event %d)\n", m.Name, short(m.From), m.To, m.Seq)
			return nil
		},
	}
	cmd.Flags().BoolVar(&changeTenant, "change-tenant", false, "allow moving to an identity of another tenant than the head's")
	addJSON(cmd, g)
	return cmd
}

func newCellRevokeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke IDENTITY",
		Short: "Forbid an identity forever: it can never run or become head again",
		Long: `Revoke IDENTITY (a full identity or an unambiguous prefix; a bare name is
refused, to avoid revoking the wrong version). It can never run, be pinned,
be rolled back to or be registered again. If it was the head, the head moves
back to the newest earlier identity that is not revoked.`,
		Args: args("IDENTITY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			m, err := g.client().Revoke(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, m)
			}
			fmt.Fprintf(out, "revoked %s (event %d)\n", a[0], m.Seq)
			if m.From != "" {
				to := m.To
				if to == "" {
					to = "(none: the name has no runnable identity)"
				}
				fmt.Fprintf(out, "%s: head %s -> %s\n", m.Name, short(m.From), to)
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newCellSyscallsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "syscalls CELL",
		Short: "Print the final seccomp allow-list of a registered cell",
		Long: `Print, one per line, every syscall the seccomp filter of CELL (a name: its
head; or an identity) allows: the base every cell gets, its groups and its
extra syscalls. Everything else kills the call. The summary goes to stderr.`,
		Example: `  tccctl cell syscalls sha256
  tccctl cell syscalls sha256:3f2a --json`,
		Args: args("CELL"),
		RunE: func(cmd *cobra.Command, a []string) error {
			s, err := g.client().Syscalls(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, s)
			}
			for _, name := range s.Allowed {
				fmt.Fprintln(out, name)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d syscalls allowed for %s (groups %v, extra %v); everything else is denied\n", len(s.Allowed), short(s.Identity), s.Groups, s.Extra)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}
