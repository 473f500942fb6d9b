// Command tccctl is the TCC command line: keys, packing and signing cells,
// and everything you ask of a running tccd (register, inspect, lineage,
// rollback, revoke, run, ledger, tokens, status), plus the MCP stdio bridge.
//
// Exit codes:
//
//	0  success
//	1  the operation failed (the message says why)
//	2  usage error: unknown command or flag, wrong arguments
//	3  tccd could not be reached on its socket
//	4  verification failed: a signature, digest or trust check refused a capsule,
//	   an audit export or proof did not verify, or a replay did not reproduce
//	5  not permitted: the daemon refused the caller
//	6  the cell ran but its verdict was not ok (run, replay)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
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

// globals are the flags every verb shares.
type globals struct {
	socket string
	json   bool
}

func (g *globals) client() *api.Client {
	c := api.NewClient(g.socket)
	c.Token = os.Getenv("TCC_TOKEN")
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
	g := &globals{}
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

tccctl finds the daemon through --socket, or TCC_SOCKET, or ` + api.DefaultSocket + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
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
		newKeyCmd(g),
		newCellCmd(g),
		newRunCmd(g),
		newStatusCmd(g),
		newLedgerCmd(g), // ledger.go
		newTokenCmd(g),  // token.go
		newVaultCmd(g),  // vault.go
		newMCPCmd(g),    // mcp.go
		newPromptCmd(g), // prompt.go
	)
	return root
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

// addJSON adds --json to a read verb.
func addJSON(cmd *cobra.Command, g *globals) {
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON instead of text")
}
