// Command gojson is a realistic Go cell: it reads one JSON value from stdin,
// hashes its canonical re-encoding with SHA-256 and writes a JSON object to
// stdout. It allocates enough to start the garbage collector, so the runtime's
// background workers show up in the measurement.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		fail(err)
	}
	canon, err := json.Marshal(v)
	if err != nil {
		fail(err)
	}
	// Churn the heap so that the collector and the scavenger run.
	var keep [][]byte
	for i := range 2000 {
		keep = append(keep, make([]byte, 32<<10))
		if i%100 == 0 {
			keep = keep[:0]
		}
	}
	runtime.GC()
	sum := sha256.Sum256(canon)
	out := map[string]any{"sha256": hex.EncodeToString(sum[:]), "bytes": len(canon)}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gojson:", err)
	os.Exit(1)
}
