package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// short abbreviates an identity for tables: sha256:0123456789ab.
func short(id string) string {
	const n = len("sha256:") + 12
	if len(id) > n {
		return id[:n]
	}
	return id
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kv(w io.Writer, key string, val any) {
	fmt.Fprintf(w, "%s:\t%v\n", key, val)
}
