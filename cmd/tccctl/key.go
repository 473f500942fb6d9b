package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/internal/keys"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make signing keys (Ed25519, signed-note format)",
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate NAME",
		Short: "Write NAME.key (secret, mode 0600) and NAME.pub (verifier)",
		Long: `Generate an Ed25519 key pair in the signed-note format of
golang.org/x/mod/sumdb/note (the format of C2SP checkpoints), so one key
format serves cell signatures and ledger checkpoints.

NAME.key signs: keep it secret (it is written mode 0600).
NAME.pub verifies: add its line to tccd's trust file (--trust) to let tccd
accept cells signed with NAME.key, or give it to 'tccctl ledger verify'.`,
		Example: `  tccctl key generate dev
  cat dev.pub >> /etc/tcc/trust`,
		Args: args("NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			keyPath, pubPath, err := keys.Generate(a[0], out)
			if err != nil {
				return err
			}
			pub, err := os.ReadFile(pubPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (secret) and %s\nverifier: %s\n", keyPath, pubPath, strings.TrimSpace(string(pub)))
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", ".", "directory to write the key files in")
	cmd.AddCommand(gen)
	return cmd
}
