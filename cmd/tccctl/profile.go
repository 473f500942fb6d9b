package main

import "github.com/spf13/cobra"

func newCellProfileCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "profile", Short: "Show a cell's learned behaviour baseline", Hidden: true}
}

func newCellAdviseCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "advise", Short: "Draft a cell's syscall allowance from its examples", Hidden: true}
}
