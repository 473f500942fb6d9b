package main

import (
	"context"
	"errors"
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

If tccd restarts, the bridge reconnects (retrying for as long as the host
keeps it running), lists everything again and tells the host that its lists
changed; calls made while tccd is away fail with an error saying so.

Diagnostics go to stderr; stdout carries only MCP. Exit codes: 3 if tccd
cannot be reached at start, 5 if it refuses TCC_TOKEN.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			c := g.client()
			// Fail fast, with the usual exit codes, when nothing answers (3)
			// or the token is refused (5), before the host sees a server.
			if _, err := c.Status(cmd.Context()); err != nil {
				return err
			}
			upstream := &sdk.StreamableClientTransport{Endpoint: api.MCPEndpoint, HTTPClient: c.HTTPClient(), MaxRetries: -1}
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
