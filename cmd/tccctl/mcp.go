package main

import "github.com/spf13/cobra"

func newMCPCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "mcp", Short: "MCP stdio bridge to tccd", Hidden: true}
}
