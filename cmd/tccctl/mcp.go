package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/mcp"
)

func newMCPCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "MCP stdio bridge to tccd, for MCP hosts",
		Long: `Speak MCP on stdin and stdout and forward everything to tccd's MCP endpoint
on its Unix socket: the host sees tccd's tools (its cells), resources and
prompts, with progress, cancellation and list changes. tccd knows the caller
by its peer credentials (the user running the host), or by TCC_TOKEN when
that is set.

Claude Desktop (claude_desktop_config.json):

  {"mcpServers": {"tcc": {"command": "tccctl", "args": ["mcp"],
                          "env": {"TCC_SOCKET": "/run/tcc/tcc.sock"}}}}

MCP Inspector:

  npx @modelcontextprotocol/inspector tccctl mcp

Diagnostics go to stderr; stdout carries only MCP.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			token := os.Getenv("TCC_TOKEN")
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			// Fail fast, with the usual exit code, when nothing answers.
			if _, err := os.Stat(g.socket); err != nil {
				return fmt.Errorf("%w on %s: %v (is tccd running? set --socket or TCC_SOCKET)", api.ErrUnreachable, g.socket, err)
			}
			upstream := &sdk.StreamableClientTransport{Endpoint: mcp.SocketEndpoint, HTTPClient: mcp.SocketClient(g.socket, token), MaxRetries: -1}
			err := mcp.Bridge(cmd.Context(), &sdk.StdioTransport{}, upstream, version(), log)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}

// version is tccctl's build version, for serverInfo.
func version() string {
	if v := os.Getenv("TCC_VERSION"); v != "" {
		return v
	}
	return "dev"
}
