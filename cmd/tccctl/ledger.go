package main

import "github.com/spf13/cobra"

func newLedgerCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "ledger", Short: "Audit log: tail, show, prove, export, verify, replay", Hidden: true}
}
