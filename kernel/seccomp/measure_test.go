//go:build cgo && seccomp

package seccomp

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/internal/testutil"
)

// TestMeasureBase is the measurement behind @tcc-runtime, kept runnable:
//
//	go test -tags seccomp -run TestMeasureBase -v ./kernel/seccomp
//
// It runs every test program with no filter under strace -f, in a root
// holding only the programs (no /proc, no /sys; or a fresh /proc where the
// configuration says so), with stdin and stdout pipes, several times for the
// Go programs whose runtime is timing-dependent. It logs the syscalls each
// configuration made (name and how many of its runs made it) and fails if
// the base profile neither allows nor answers one of them.
func TestMeasureBase(t *testing.T) {
	testutil.RequireRoot(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (apt-get install strace); the kernel tests still check the base")
	}
	small := []byte(`{"cell":"tcc","n":[1,2,3],"ok":true}` + "\n")
	big := make([]byte, 3<<20)
	rand.Read(big)

	type config struct {
		prog  string
		env   []string
		proc  bool
		input []byte
		runs  int
	}
	var configs []config
	for _, p := range []string{"cstdio-glibc", "cstdio-musl"} {
		configs = append(configs, config{p, nil, false, small, 1})
	}
	for _, p := range []string{"cslurp-glibc", "cslurp-musl"} {
		configs = append(configs, config{p, nil, false, big, 1})
	}
	for _, p := range []string{"gohello", "gojson"} {
		for _, procs := range []string{"GOMAXPROCS=1", "GOMAXPROCS=2"} {
			for _, proc := range []bool{false, true} {
				configs = append(configs, config{p, []string{procs}, proc, small, 3})
			}
		}
	}

	base := mustCompile(t, manifest.Syscalls{})
	answered := map[string]bool{}
	for _, r := range base.Rules() {
		answered[r.Syscall] = true
	}
	for _, c := range configs {
		name := strings.Join(append([]string{c.prog}, c.env...), " ")
		if c.proc {
			name += " +proc"
		}
		seen := map[string]int{} // syscall -> runs that made it
		for range c.runs {
			for sc := range straceRun(t, strace, c.prog, c.env, c.proc, c.input) {
				seen[sc]++
			}
		}
		var line []string
		for _, sc := range slices.Sorted(maps.Keys(seen)) {
			entry := sc
			if seen[sc] != c.runs {
				entry = fmt.Sprintf("%s(%d/%d)", sc, seen[sc], c.runs)
			}
			line = append(line, entry)
			if !answered[sc] {
				t.Errorf("%s: made %s, which the base neither allows nor answers", name, sc)
			}
		}
		t.Logf("%-28s %s", name+":", strings.Join(line, " "))
	}
}

var straceCall = regexp.MustCompile(`^(\d+)\s+([a-z0-9_]+)\(`)

// straceRun runs one program under strace and returns the syscalls it made
// after its execve returned (the child's own start-up is cut off).
func straceRun(t *testing.T, strace, progName string, env []string, proc bool, input []byte) map[string]bool {
	t.Helper()
	progPath := "/" + progName
	prog(t, progName)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", out, self, progPath)
	cmd.Env = append([]string{envChild + "=none", envRoot + "=" + progDir}, env...)
	if proc {
		cmd.Env = append(cmd.Env, envProc+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(input), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("strace %s: %v\n%s", progName, err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	var pid string
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		if pid == "" && strings.HasPrefix(f[1], `execve("`+progPath+`"`) {
			pid = f[0]
		}
		if pid != "" && f[0] == pid && strings.Contains(l, "execve") && strings.HasSuffix(l, "= 0") {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("strace %s: no completed execve in the trace", progName)
	}
	seen := map[string]bool{}
	for _, l := range lines[start:] {
		if m := straceCall.FindStringSubmatch(l); m != nil {
			seen[m[2]] = true
		}
	}
	return seen
}
