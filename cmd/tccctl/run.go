package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
)

func newRunCmd(g *globals) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "run CELL --input JSON",
		Short: "Call a registered cell once, in a fresh sandbox",
		Long: `Call a registered cell once. CELL is a name (its head runs) or an identity
(that exact version runs, if it is registered and not revoked).

The input is one JSON value, checked against the cell's input schema before
any sandbox is made: --input '{"text":"abc"}', --input @file.json, or
--input - to read standard input.

Prints the cell's result. With --json prints the whole outcome: verdict,
result, exit status, duration, CPU, peak memory, the wipe check and the
ledger sequence numbers of the call's events. A verdict other than ok exits 6.`,
		Example: `  tccctl run sha256 --input '{"text":"abc"}'
  tccctl run json-query --input @query.json --json`,
		Args: args("CELL"),
		RunE: func(cmd *cobra.Command, a []string) error {
			in, err := readInput(input, cmd.InOrStdin())
			if err != nil {
				return err
			}
			o, err := g.client().Run(cmd.Context(), api.RunRequest{Cell: a[0], Input: in})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				if err := printJSON(out, o); err != nil {
					return err
				}
			} else if o.OK() {
				if err := printJSON(out, o.Result); err != nil {
					return err
				}
			}
			if !o.OK() {
				msg := o.Summary()
				if o.Stderr != "" && !g.json {
					msg += "\nstderr (tail):\n" + strings.TrimRight(o.Stderr, "\n")
				}
				return &exitError{code: exitCallFailed, err: fmt.Errorf("%s [verdict %s]", msg, o.Verdict)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "input JSON, @FILE, or - for stdin (required)")
	_ = cmd.MarkFlagRequired("input")
	addJSON(cmd, g)
	return cmd
}

// readInput resolves --input: literal JSON, @file, or - for stdin.
func readInput(arg string, stdin io.Reader) (json.RawMessage, error) {
	var (
		data []byte
		err  error
		from = "--input"
	)
	switch {
	case arg == "-":
		data, err = io.ReadAll(stdin)
		from = "standard input"
	case strings.HasPrefix(arg, "@"):
		data, err = os.ReadFile(arg[1:])
		from = arg[1:]
	default:
		data = []byte(arg)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, usageErrorf("%s is not valid JSON", from)
	}
	return json.RawMessage(data), nil
}
