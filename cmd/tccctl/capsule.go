package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/keys"
)

// verificationError marks capsule refusals for exit code 4.
func verificationError(err error) error {
	var ce *capsule.Error
	if errors.As(err, &ce) {
		return &exitError{code: exitVerification, err: err}
	}
	return err
}

func newCellPackCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "pack DIR",
		Short: "Hash a capsule directory's files into its cell.yaml (and write a .cell tar)",
		Long: `Hash every file of the capsule directory DIR (except cell.yaml, cell.sig and
what DIR/.cellignore excludes, such as sources) and write their SHA-256
digests into cell.yaml's files, keeping the rest of cell.yaml as written.
The result is checked as 'cell verify' would, and the cell's identity is
printed. A cell.sig over an older identity is removed: sign again.

With -o, also write the capsule as a deterministic .cell tar.`,
		Example: `  tccctl cell pack cells/examples/sha256 -o sha256.cell`,
		Args:    args("DIR"),
		RunE: func(cmd *cobra.Command, a []string) error {
			p, err := capsule.Pack(a[0])
			if err != nil {
				return verificationError(err)
			}
			w := cmd.OutOrStdout()
			for _, warn := range p.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			if out != "" {
				c, err := capsule.Open(a[0])
				if err != nil {
					return err
				}
				var buf bytes.Buffer
				if err := capsule.WriteTar(c, &buf); err != nil {
					return err
				}
				if err := writeAtomic(out, buf.Bytes()); err != nil {
					return err
				}
			}
			if g.json {
				return printJSON(w, map[string]any{"identity": p.Identity, "name": p.Manifest.Name, "rewrote": p.Rewrote, "tar": out, "warnings": p.Warnings})
			}
			fmt.Fprintf(w, "%s %s (%d files)\n", p.Manifest.Name, p.Identity, len(p.Manifest.Files))
			if out != "" {
				fmt.Fprintf(w, "wrote %s\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "also write the capsule as a .cell tar here")
	addJSON(cmd, g)
	return cmd
}

// writeAtomic writes a capsule file (a .cell or .prompt tar) so that it
// is either the old file or the whole new one, never half written.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func newCellSignCmd(g *globals) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "sign CAPSULE --key NAME.key",
		Short: "Sign a packed capsule (directory or .cell)",
		Long: `Add a signature by --key to CAPSULE's cell.sig. The signature covers the
cell's identity (the SHA-256 of its canonical manifest, which lists the
digest of every file), in a domain of its own: it can never be mistaken for
a signature over anything else. Other keys' signatures are kept.`,
		Example: `  tccctl cell sign sha256.cell --key dev.key`,
		Args:    args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			signer, err := keys.LoadSigner(key)
			if err != nil {
				return err
			}
			c, err := capsule.Open(a[0])
			if err != nil {
				return verificationError(err)
			}
			if err := capsule.Sign(c, signer); err != nil {
				return verificationError(err)
			}
			m, _ := c.Manifest()
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s %s with %s\n", m.Name, m.Identity(), signer.Name())
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "signer key file (from 'tccctl key generate')")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newCellVerifyCmd(g *globals) *cobra.Command {
	var trust string
	cmd := &cobra.Command{
		Use:   "verify CAPSULE --trust FILE",
		Short: "Check a capsule's files, manifest and signature, offline",
		Long: `Verify CAPSULE as tccd would at registration: cell.yaml parses, every listed
file is present and matches its digest, no file is unlisted, and cell.sig is
a valid signature over this identity by a key in FILE (a trust file: one
verifier key per line; a single NAME.pub works). Exits 4 if it does not.`,
		Example: `  tccctl cell verify sha256.cell --trust dev.pub`,
		Args:    args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			vs, _, err := keys.LoadTrust(trust)
			if err != nil {
				return err
			}
			c, err := capsule.Open(a[0])
			if err != nil {
				return verificationError(err)
			}
			v, err := capsule.Verify(c, vs)
			if err != nil {
				return verificationError(err)
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"identity": v.Identity, "name": v.Manifest.Name, "signers": v.Signers})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s %s signed by %s\n", v.Manifest.Name, v.Identity, strings.Join(v.Signers, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&trust, "trust", "", "trust file or .pub key")
	_ = cmd.MarkFlagRequired("trust")
	addJSON(cmd, g)
	return cmd
}

func newCellRegisterCmd(g *globals) *cobra.Command {
	var t api.Tenancy
	cmd := &cobra.Command{
		Use:   "register CAPSULE",
		Short: "Register a signed capsule (directory or .cell) with tccd",
		Long: `Send CAPSULE to tccd, which verifies it against its trust file, runs its
examples (the probation run), stores its files in its content-addressed
store and records it in the ledger. The identity is immutable from then on.

The first cell of a name has no parent; every later one must name the
current head as its parent in cell.yaml, or registration fails and says what
the head is. Admin only (root or tccd's admin group).

--tenant makes a first version visible to that tenant only (default: every
tenant). A new version keeps its parent's tenant; giving another --tenant
(--tenant '' for every tenant) is refused unless --change-tenant is given too.`,
		Example: `  tccctl cell register sha256.cell
  tccctl cell register cells/examples/json-query --tenant acme
  tccctl cell register json-query-v2.cell                        # stays acme's
  tccctl cell register json-query-v3.cell --tenant '' --change-tenant   # now shared`,
		Args: args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := capsule.Open(a[0])
			if err != nil {
				return verificationError(err)
			}
			var buf bytes.Buffer
			if err := capsule.WriteTar(c, &buf); err != nil {
				return err
			}
			t.Set = cmd.Flags().Changed("tenant")
			r, err := g.client().RegisterAs(cmd.Context(), &buf, t)
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
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s %s (event %d)\nparent: %s\n", r.Name, r.Identity, r.Seq, parent)
			return nil
		},
	}
	addTenancy(cmd, &t)
	addJSON(cmd, g)
	return cmd
}

// addTenancy adds --tenant and --change-tenant to a register verb.
func addTenancy(cmd *cobra.Command, t *api.Tenancy) {
	cmd.Flags().StringVar(&t.Tenant, "tenant", "", "the tenant it is for; '' for every tenant (default: the parent's, or every tenant for a first version)")
	cmd.Flags().BoolVar(&t.Change, "change-tenant", false, "allow a --tenant other than the parent's")
}

func newCellInspectCmd(g *globals) *cobra.Command {
	var trust string
	cmd := &cobra.Command{
		Use:   "inspect CAPSULE|NAME|IDENTITY",
		Short: "Show a cell: identity, parent, signers and its contract",
		Long: `Show a cell's identity, name, parent, signers and a summary of its contract.

If the argument is a path to a capsule (directory or .cell), it is read
locally (with --trust, its signature is also checked). Otherwise tccd is
asked: a name shows its head, an identity or unambiguous prefix that
version.`,
		Example: `  tccctl cell inspect sha256.cell --trust dev.pub
  tccctl cell inspect sha256
  tccctl cell inspect sha256:3f2a --json`,
		Args: args("CAPSULE|NAME|IDENTITY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			out := cmd.OutOrStdout()
			if _, err := os.Stat(a[0]); err == nil {
				return inspectLocal(g, out, a[0], trust)
			}
			c, err := g.client().Cell(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(out, c)
			}
			return printRegistered(out, c)
		},
	}
	cmd.Flags().StringVar(&trust, "trust", "", "for a local capsule: trust file or .pub key to verify against")
	addJSON(cmd, g)
	return cmd
}

func inspectLocal(g *globals, out io.Writer, path, trust string) error {
	c, err := capsule.Open(path)
	if err != nil {
		return verificationError(err)
	}
	var s *capsule.Summary
	if trust != "" {
		vs, _, err := keys.LoadTrust(trust)
		if err != nil {
			return err
		}
		s, err = capsule.Inspect(c, vs)
		if err != nil {
			return verificationError(err)
		}
	} else if s, err = capsule.Inspect(c, nil); err != nil {
		return verificationError(err)
	}
	if g.json {
		return printJSON(out, s)
	}
	m, err := c.Manifest()
	if err != nil {
		return verificationError(err)
	}
	sig := strings.Join(s.Signers, ", ")
	switch {
	case trust == "":
		sig = orDash(sig) + " (not checked: use --trust)"
	case s.Verified:
		sig += " (verified)"
	default:
		sig = orDash(sig) + " (NOT VERIFIED: " + s.Problem + ")"
	}
	w := table(out)
	kv(w, "identity", s.Identity)
	kv(w, "signers", sig)
	printContract(w, m)
	for _, f := range s.Files {
		note := ""
		if !f.Listed {
			note = " (NOT LISTED in cell.yaml)"
		}
		kv(w, "file", fmt.Sprintf("%s %s %d bytes %s%s", f.Mode, f.Path, f.Size, f.Digest.Short(), note))
	}
	return w.Flush()
}

// printRegistered prints a registered cell as tccd reports it.
func printRegistered(out io.Writer, c *api.Cell) error {
	m, err := manifest.Parse(c.Manifest)
	if err != nil {
		return fmt.Errorf("tccd sent a manifest that does not parse: %w", err)
	}
	state := "registered"
	if c.Head {
		state = "head"
	}
	if c.Revoked {
		state = "REVOKED"
	}
	w := table(out)
	kv(w, "identity", c.Identity)
	kv(w, "state", fmt.Sprintf("%s (event %d, %s)", state, c.Seq, when(c.RegisteredAt)))
	kv(w, "signers", strings.Join(c.Signers, ", "))
	kv(w, "tenant", orDash(c.Tenant))
	printContract(w, m)
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		kv(w, "file", fmt.Sprintf("%s %s", p, m.Files[p].Short()))
	}
	return w.Flush()
}

// printContract prints the part of a manifest a reviewer reads first.
func printContract(w io.Writer, m *manifest.Manifest) {
	kv(w, "name", m.Name)
	if m.Title != "" {
		kv(w, "title", m.Title)
	}
	kv(w, "description", m.Description)
	kv(w, "parent", orDash(string(m.Parent)))
	kv(w, "entrypoint", strings.TrimSpace(m.Entrypoint+" "+strings.Join(m.Args, " ")))
	a := m.Annotations
	kv(w, "phase", fmt.Sprintf("%s (readOnly %t, destructive %t, idempotent %t, openWorld %t)", m.Phase, a.ReadOnly, a.Destructive, a.Idempotent, a.OpenWorld))
	l := m.Limits
	kv(w, "limits", fmt.Sprintf("memory %s, pids %d, cpu %s, wall %s, input %s, output %s, stderr %s", l.Memory, l.Pids, l.CPU, l.Wall, l.Input, l.Output, l.Stderr))
	kv(w, "syscalls", fmt.Sprintf("groups %v, extra %v (tccctl cell syscalls shows the final list)", m.Syscalls.Groups, m.Syscalls.Extra))
	fsys := []string{"/cell (read-only)"}
	if m.Filesystem.Tmp {
		fsys = append(fsys, "/tmp "+l.Tmp.String())
	}
	if m.Filesystem.Proc {
		fsys = append(fsys, "/proc")
	}
	for _, d := range m.Filesystem.Devices {
		fsys = append(fsys, "/dev/"+string(d))
	}
	kv(w, "filesystem", strings.Join(fsys, ", "))
	kv(w, "network", m.Network)
	nd := "none (deterministic)"
	if len(m.Nondeterminism) > 0 {
		nd = fmt.Sprint(m.Nondeterminism)
	}
	kv(w, "nondeterminism", nd)
	kv(w, "monitor", fmt.Sprintf("policy %s, threshold %g", m.Monitor.Policy, m.Monitor.Threshold))
	kv(w, "examples", len(m.Examples))
}
