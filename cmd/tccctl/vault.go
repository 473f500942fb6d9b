package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newVaultCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Tenant-scoped documents served as MCP resources",
		Long: `The vault holds each tenant's documents (policies, regulations, evidence).
MCP clients of the tenant read them as resources vault://TENANT/PATH (and
prompts embed them); every read is a vault.read event in the ledger. The
content goes to tccd's content-addressed store; the index and a vault.put
event to the ledger.`,
	}
	cmd.AddCommand(newVaultPutCmd(g), newVaultListCmd(g))
	return cmd
}

func newVaultPutCmd(g *globals) *cobra.Command {
	var mime, alias string
	cmd := &cobra.Command{
		Use:   "put TENANT PATH FILE",
		Short: "Add or replace a document (admin)",
		Long: `Store FILE as document PATH of TENANT, served as vault://TENANT/PATH. The
MIME type is --mime, or detected from PATH's extension and the content.
--uri also publishes the document under another absolute URI (for example
the URI a policy already has), unique across tenants. A document larger than
16 MiB is refused.`,
		Example: `  tccctl vault put acme policies/iso27001.md iso27001.md
  tccctl vault put acme evidence/scan.png scan.png --mime image/png`,
		Args: args("TENANT", "PATH", "FILE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			f, err := os.Open(a[2])
			if err != nil {
				return err
			}
			defer f.Close()
			d, err := g.client().VaultPut(cmd.Context(), a[0], a[1], f, mime, alias)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %d bytes (event %d)\n", d.URI, d.SHA256, d.MIME, d.Size, d.Seq)
			return nil
		},
	}
	cmd.Flags().StringVar(&mime, "mime", "", "MIME type (default: detected)")
	cmd.Flags().StringVar(&alias, "uri", "", "also publish the document under this absolute URI")
	addJSON(cmd, g)
	return cmd
}

func newVaultListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [TENANT]",
		Short: "List documents (of TENANT, or every one you may see)",
		Long: `List vault documents: an admin sees every tenant's, or TENANT's; a tenant's
caller (with scope resources:read) sees its own tenant's only. Each line
has the document's vault URI, MIME type, size, digest, last update and
alias.`,
		Example: `  tccctl vault list
  tccctl vault list acme --json`,
		Args: optionalArgs("TENANT"),
		RunE: func(cmd *cobra.Command, a []string) error {
			tenant := ""
			if len(a) == 1 {
				tenant = a[0]
			}
			docs, err := g.client().Vault(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, docs)
			}
			w := table(out)
			fmt.Fprintln(w, "URI\tMIME\tSIZE\tSHA256\tUPDATED\tALIAS")
			for _, d := range docs {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", d.URI, d.MIME, d.Size, short(d.SHA256), when(d.Updated), orDash(d.Alias))
			}
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}
