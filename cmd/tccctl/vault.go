package main

import "github.com/spf13/cobra"

func newVaultCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "vault", Short: "Tenant-scoped documents served as MCP resources", Hidden: true}
}
