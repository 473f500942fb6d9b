package main

import "github.com/spf13/cobra"

func newTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "token", Short: "Bearer tokens for MCP clients", Hidden: true}
}
