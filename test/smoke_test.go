package test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSmoke registers the sha256 example and calls it through tccctl: the
// plain run prints the digest, --json the whole outcome.
func TestSmoke(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	id := e.Register("cells/examples/sha256", nil)
	const digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

	out := e.MustCtl("run", "sha256", "--input", `{"text":"abc"}`)
	var res struct {
		SHA256 string `json:"sha256"`
		Bytes  int    `json:"bytes"`
	}
	decodeJSON(t, out, &res)
	if res.SHA256 != digest || res.Bytes != 3 {
		t.Errorf("run sha256 = %s, want digest %s of 3 bytes", out, digest)
	}
	if out := e.MustCtl("cell", "inspect", "sha256"); !strings.Contains(out, id) {
		t.Errorf("inspect does not show identity %s:\n%s", id, out)
	}

	// --json: every field of the outcome, with values that make sense.
	out = e.MustCtl("run", "sha256", "--input", `{"text":"abc"}`, "--json")
	var raw map[string]json.RawMessage
	decodeJSON(t, out, &raw)
	for _, k := range []string{"cell", "identity", "verdict", "result", "exit_code", "duration", "cpu", "peak_memory", "wipe", "begin_seq", "end_seq", "trace_id"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("run --json has no %q:\n%s", k, out)
		}
	}
	o := parseOutcome(t, out)
	if o.Verdict != "ok" || o.Identity != id || o.ExitCode != 0 || !strings.Contains(string(o.Result), digest) {
		t.Errorf("outcome: verdict %s identity %s exit %d result %s", o.Verdict, o.Identity, o.ExitCode, o.Result)
	}
	if o.Duration <= 0 || o.CPU <= 0 || o.PeakMemory <= 0 || o.PeakMemory > 32<<20 {
		t.Errorf("usage: duration %v cpu %v peak memory %d; want all positive, memory within the 32MiB limit", o.Duration, o.CPU, o.PeakMemory)
	}
	if !o.Wipe.Clean || o.Wipe.Elapsed <= 0 || len(o.Wipe.Leftovers) != 0 {
		t.Errorf("wipe %+v", o.Wipe)
	}
	if o.BeginSeq == 0 || o.EndSeq <= o.BeginSeq {
		t.Errorf("ledger seqs begin %d end %d", o.BeginSeq, o.EndSeq)
	}
	noCellProcesses(t, e)
}
