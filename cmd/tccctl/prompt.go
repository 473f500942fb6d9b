package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/keys"
	"github.com/trustcells/tcc/mcp/prompt"
)

func newPromptCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prompt",
		Short: "Pack, sign, register and inspect MCP prompt templates",
		Long: `A prompt is a capsule like a cell: a directory (or a .prompt tar of it) holding
prompt.yaml, a parameterised template (name, description, arguments,
messages with {{argument}} placeholders, messages that embed vault
documents by URI), and prompt.sig, its signature. Its identity is the
SHA-256 of its canonical encoding; signatures use their own domain, so a
cell's signature never passes for a prompt's. Each name has a lineage: a
new version names the current head as its parent. MCP clients see the heads
in prompts/list and render them with prompts/get.`,
	}
	cmd.AddCommand(newPromptPackCmd(g), newPromptSignCmd(g), newPromptRegisterCmd(g), newPromptListCmd(g), newPromptShowCmd(g))
	return cmd
}

// promptVerification marks prompt refusals for exit code 4.
func promptVerification(err error) error {
	var ve *prompt.VerifyError
	if errors.As(err, &ve) || errors.Is(err, prompt.ErrInvalid) {
		return &exitError{code: exitVerification, err: err}
	}
	return err
}

func newPromptPackCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:     "pack DIR [-o NAME.prompt]",
		Short:   "Check a prompt directory's prompt.yaml, print its identity, write a .prompt tar",
		Example: `  tccctl prompt pack prompts/audit-review -o audit-review.prompt`,
		Args:    args("DIR"),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := prompt.Open(a[0])
			if err != nil {
				return promptVerification(err)
			}
			id := c.Prompt.Identity()
			var warn string
			if c.Sig != nil && !bytes.Contains(c.Sig, []byte(string(id))) {
				c.Sig = nil
				warn = "prompt.sig signs another identity and was left out; sign again (tccctl prompt sign)"
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			if out != "" {
				var buf bytes.Buffer
				if err := c.WriteTar(&buf); err != nil {
					return err
				}
				if err := writeAtomic(out, buf.Bytes()); err != nil { // capsule.go
					return err
				}
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"name": c.Prompt.Name, "identity": id, "tar": out, "warning": warn})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%d arguments, %d messages)\n", c.Prompt.Name, id, len(c.Prompt.Arguments), len(c.Prompt.Messages))
			if out != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "also write the capsule as a .prompt tar here")
	addJSON(cmd, g)
	return cmd
}

func newPromptSignCmd(g *globals) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:     "sign CAPSULE --key NAME.key",
		Short:   "Sign a prompt capsule (directory or .prompt)",
		Example: `  tccctl prompt sign audit-review.prompt --key dev.key`,
		Args:    args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			signer, err := keys.LoadSigner(key)
			if err != nil {
				return err
			}
			c, err := prompt.Open(a[0])
			if err != nil {
				return promptVerification(err)
			}
			if err := prompt.Sign(c, signer); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed prompt %s %s with %s\n", c.Prompt.Name, c.Prompt.Identity(), signer.Name())
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "signer key file (from 'tccctl key generate')")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newPromptRegisterCmd(g *globals) *cobra.Command {
	var t api.Tenancy
	cmd := &cobra.Command{
		Use:   "register CAPSULE",
		Short: "Register a signed prompt capsule with tccd (admin)",
		Long: `Send CAPSULE to tccd, which verifies its signature against its trust file and
records it in the ledger (a prompt.register event). The first prompt of a
name has no parent; every later one must name the current head as parent.
A new version keeps its parent's tenant unless --tenant and --change-tenant
say otherwise (as for cell register).`,
		Example: `  tccctl prompt register audit-review.prompt --tenant acme`,
		Args:    args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := prompt.Open(a[0])
			if err != nil {
				return promptVerification(err)
			}
			var buf bytes.Buffer
			if err := c.WriteTar(&buf); err != nil {
				return err
			}
			t.Set = cmd.Flags().Changed("tenant")
			r, err := g.client().RegisterPrompt(cmd.Context(), &buf, t)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			parent := "none (first of its name)"
			if r.Parent != "" {
				parent = r.Parent
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered prompt %s %s (event %d)\nparent: %s\n", r.Name, r.Identity, r.Seq, parent)
			return nil
		},
	}
	addTenancy(cmd, &t) // capsule.go
	addJSON(cmd, g)
	return cmd
}

func newPromptListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered prompts: each name with its head",
		Long: `List every prompt name you may see (shared ones and your tenant's; admins
see all) with its head identity, number of arguments and versions, tenant
and when the head was registered.`,
		Example: `  tccctl prompt list
  tccctl prompt list --json`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := g.client().Prompts(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, ps)
			}
			w := table(out)
			fmt.Fprintln(w, "NAME\tHEAD\tARGS\tVERSIONS\tTENANT\tREGISTERED")
			for _, p := range ps {
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, short(p.Head), p.Arguments, p.Versions, orDash(p.Tenant), when(p.RegisteredAt))
			}
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newPromptShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show NAME|IDENTITY",
		Short: "Show a registered prompt (a name shows its head) and its lineage",
		Long: `Show a registered prompt: its identity, parent, tenant, signers and the
ledger event that registered it, the canonical prompt, and the lineage of
its name (oldest first, the head marked *).`,
		Example: `  tccctl prompt show audit-review
  tccctl prompt show sha256:5d1c --json`,
		Args: args("NAME|IDENTITY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			p, err := g.client().Prompt(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, p)
			}
			w := table(out)
			kv(w, "name", p.Name)
			kv(w, "identity", p.Identity)
			kv(w, "parent", orDash(p.Parent))
			kv(w, "head", p.Head)
			kv(w, "tenant", orDash(p.Tenant))
			kv(w, "signers", strings.Join(p.Signers, ", "))
			kv(w, "registered", fmt.Sprintf("%s (event %d)", when(p.RegisteredAt), p.Seq))
			if err := w.Flush(); err != nil {
				return err
			}
			var pretty bytes.Buffer
			if json.Indent(&pretty, p.Prompt, "", "  ") == nil {
				fmt.Fprintf(out, "\n%s\n", pretty.String())
			}
			fmt.Fprintln(out, "\nlineage (oldest first):")
			for _, e := range p.Lineage {
				mark := " "
				if e.Head {
					mark = "*"
				}
				fmt.Fprintf(out, "%s %s parent %s event %d\n", mark, e.Identity, short(orDash(e.Parent)), e.Seq)
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}
