package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes checks the exit codes README.md and tccctl's doc promise
// for what needs no daemon: usage errors are 2, an unreachable tccd is 3.
// The others are checked where they arise: 1 and 4 in TestCapsuleRefusals,
// 5 in TestCallers and TestMCP (auth, control API, bridge exit codes), 6
// in TestVerdicts.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the file stays; nothing answers on it
	missing := filepath.Join(dir, "missing.sock")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate" for "tccctl"`},
		{[]string{"cell", "lsit"}, 2, `unknown command "lsit" for "tccctl cell"; did you mean list?`},
		{[]string{"ledger", "frobnicate"}, 2, `unknown command "frobnicate" for "tccctl ledger"`},
		{[]string{"cell"}, 0, "Usage:"},
		{[]string{"run"}, 2, "missing CELL"},
		{[]string{"run", "sha256"}, 2, `required flag(s) "input" not set`},
		{[]string{"run", "sha256", "--input", "{"}, 2, "is not valid JSON"},
		{[]string{"status", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"status", "--socket", missing}, 3, "cannot reach tccd"},
		{[]string{"status", "--socket", stale}, 3, "cannot reach tccd"},
		{[]string{"mcp", "--socket", stale}, 3, "cannot reach tccd"},
	} {
		cmd := exec.Command(filepath.Join(bin, "tccctl"), tt.args...)
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+missing)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(string(out), tt.want) {
			t.Errorf("tccctl %s: exit %d, want %d with %q; output:\n%s", strings.Join(tt.args, " "), code, tt.code, tt.want, out)
		}
	}
}
