// Command tccctl is the TCC command line: keys, packing and signing cells,
// and everything you ask of a running tccd (register, inspect, lineage,
// rollback, revoke, run, ledger, tokens, status), plus the MCP stdio bridge.
//
// Exit codes (README.md has the same table; test/exitcodes_test.go checks it):
//
//	0  success
//	1  the operation failed (the message says why)
//	2  usage error: unknown command or flag, a missing argument or required
//	   flag, input that is not JSON
//	3  tccd could not be reached on its socket (nothing was sent)
//	4  verification failed: a signature, digest or trust check refused a capsule,
//	   an audit export or proof did not verify, or a replay did not reproduce
//	5  not permitted: the daemon refused the caller (a refused token, a
//	   missing scope, an admin verb)
//	6  the cell ran but its verdict was not ok (run, replay)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
)

const (
	exitFailure      = 1
	exitUsage        = 2
	exitUnreachable  = 3
	exitVerification = 4
	exitForbidden    = 5
	exitCallFailed   = 6
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// globals are the flags and environment every verb shares.
type globals struct {
	socket string
	token  string // TCC_TOKEN: act as the token's caller, not by peer credentials
	json   bool
}

func (g *globals) client() *api.Client {
	c := api.NewClient(g.socket)
	c.Token = g.token
	return c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRoot()
	err := root.ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "tccctl:", err)
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, api.ErrUnreachable) {
		return exitUnreachable
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodeVerification:
			return exitVerification
		case api.CodeForbidden, api.CodeUnauthorized:
			return exitForbidden
		case api.CodeBadRequest:
			return exitFailure
		}
	}
	return exitFailure
}

func newRoot() *cobra.Command {
	g := &globals{token: os.Getenv("TCC_TOKEN")}
	root := &cobra.Command{
		Use:   "tccctl",
		Short: "Control TCC: pack, sign and register cells, run them, audit the ledger",
		Long: `tccctl is the command line of TCC (Trusted Compute Cells).

Cells are small static binaries with a signed manifest, their execution
contract. tccd, the root daemon, registers them in its ledger and runs each
call in a throwaway sandbox with a seccomp filter derived from the manifest.

A first session:

  tccctl key generate dev                    # dev.key (secret), dev.pub (give it to tccd --trust)
  tccctl cell pack cells/examples/sha256 -o sha256.cell
  tccctl cell sign sha256.cell --key dev.key
  tccctl cell register sha256.cell
  tccctl run sha256 --input '{"text":"abc"}'

tccctl finds the daemon through --socket, or TCC_SOCKET, or ` + api.DefaultSocket + `.
With TCC_TOKEN set, tccd knows you by that bearer token instead of your user.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Cobra's own "required flag(s) not set" error has no type to map to
		// an exit code; checking here, before cobra does, makes it exit 2.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
			}
			return nil
		},
	}
	sock := os.Getenv("TCC_SOCKET")
	if sock == "" {
		sock = api.DefaultSocket
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", sock, "tccd's Unix socket (env TCC_SOCKET)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		group(newKeyCmd(g)),
		group(newCellCmd(g)),
		newRunCmd(g),
		newStatusCmd(g),
		group(newLedgerCmd(g)), // ledger.go
		group(newTokenCmd(g)),  // token.go
		group(newVaultCmd(g)),  // vault.go
		newMCPCmd(g),           // mcp.go
		group(newPromptCmd(g)), // prompt.go
	)
	return group(root)
}

// group makes cmd a group of verbs: alone it prints its help; an unknown
// verb is a usage error (exit 2). Cobra would print the help and exit 0
// for the latter in a subgroup, and give an error without a type for it
// at the root.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(cmd *cobra.Command, a []string) error {
		if len(a) == 0 {
			return nil
		}
		hint := ""
		if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
			hint = "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageErrorf("unknown command %q for %q%s (%s --help lists them)", a[0], cmd.CommandPath(), hint, cmd.CommandPath())
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return cmd
}

// args returns a cobra.PositionalArgs that wants exactly the named
// arguments, and says which are missing as a usage error.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) == len(names) {
			return nil
		}
		if len(a) < len(names) {
			return usageErrorf("%s: missing %s (usage: %s)", cmd.CommandPath(), names[len(a)], cmd.UseLine())
		}
		return usageErrorf("%s: too many arguments (usage: %s)", cmd.CommandPath(), cmd.UseLine())
	}
}

// optionalArgs returns a cobra.PositionalArgs that takes up to the named
// arguments.
func optionalArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) > len(names) {
			return usageErrorf("%s: too many arguments (usage: %s)", cmd.CommandPath(), cmd.UseLine())
		}
		return nil
	}
}

// addJSON adds --json to a read verb.
func addJSON(cmd *cobra.Command, g *globals) {
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON instead of text")
}
