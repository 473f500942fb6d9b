package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/mcp"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Bearer tokens for MCP clients",
		Long: `tccd issues bearer tokens (EdDSA-signed JWTs) for MCP clients that cannot be
identified by their Unix peer credentials: HTTP clients on --listen-tcp, or a
stdio bridge that should act for a tenant (TCC_TOKEN=... tccctl mcp). A
token carries one tenant, its scopes and an expiry; issuing and revoking are
ledger events, and a revoked token is refused on every request from then on.

Scopes: ` + strings.Join(mcp.Scopes, ", ") + `. Admin only.`,
	}
	cmd.AddCommand(newTokenIssueCmd(g), newTokenRevokeCmd(g), newTokenListCmd(g))
	return cmd
}

func newTokenIssueCmd(g *globals) *cobra.Command {
	var req api.TokenRequest
	cmd := &cobra.Command{
		Use:   "issue --tenant TENANT --scope SCOPE... [--ttl 24h]",
		Short: "Issue a token; prints it once (tccd keeps only its record)",
		Example: `  tccctl token issue --tenant acme --scope tools:list --scope tools:call --ttl 24h
  TCC_TOKEN=$(tccctl token issue --tenant acme --scope tools:list,tools:call) tccctl mcp`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := g.client().IssueToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, t)
			}
			fmt.Fprintln(out, t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s for tenant %s, scopes %s, expires %s (event %d)\n", t.JTI, t.Tenant, strings.Join(t.Scopes, " "), when(t.ExpiresAt), t.Seq)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Tenant, "tenant", "", "the tenant the token acts for (required)")
	f.StringSliceVar(&req.Scopes, "scope", nil, "a scope to grant; repeat or separate with commas ("+strings.Join(mcp.Scopes, ", ")+")")
	f.StringVar(&req.TTL, "ttl", "24h", "lifetime, a Go duration (at most 8784h)")
	f.StringVar(&req.Note, "note", "", "a note kept with the token's record")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("scope")
	addJSON(cmd, g)
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke JTI",
		Short: "Revoke a token by its id; it is refused from its next request on",
		Long: `Revoke the token whose id (jti) is JTI, as tccctl token list shows it. The
revocation is a token.revoke event; every request that carries the token is
refused from then on (401), including those of MCP sessions opened with it.
Admin only.`,
		Example: `  tccctl token revoke 0190f1c2-7a3b-7c4d-9e5f-0123456789ab`,
		Args:    args("JTI"),
		RunE: func(cmd *cobra.Command, a []string) error {
			r, err := g.client().RevokeToken(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s (event %d)\n", r.JTI, r.Seq)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued tokens (ids, tenants, scopes, status; never the tokens)",
		Long: `List every token tccd issued: its id, tenant, scopes, expiry, status
(active, expired or revoked) and who issued it. tccd keeps records, never
the tokens themselves. Admin only.`,
		Example: `  tccctl token list
  tccctl token list --json`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := g.client().Tokens(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, ts)
			}
			w := table(out)
			fmt.Fprintln(w, "JTI\tTENANT\tSCOPES\tEXPIRES\tSTATUS\tISSUED BY")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.JTI, t.Tenant, strings.Join(t.Scopes, ","), when(t.ExpiresAt), t.Status, t.IssuedBy)
			}
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}
