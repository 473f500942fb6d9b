// Command gohello is the smallest realistic Go cell: it copies stdin to
// stdout, writes one line to stderr and exits 0. Built with CGO_ENABLED=0, it
// is what the base group is measured on.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "gohello:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "gohello: done")
}
