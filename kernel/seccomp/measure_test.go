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
	"strconv"
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
// the base profile neither allows nor answers one of them, arguments
// included for the syscalls the base narrows (clone, fcntl, prlimit64).
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
		checked := 0
		for range c.runs {
			names, calls := straceRun(t, strace, c.prog, c.env, c.proc, c.input)
			for sc := range names {
				seen[sc]++
			}
			checked += len(calls)
			for _, call := range calls {
				if !base.permits(call.name, call.args) {
					t.Errorf("%s: made %s(%#x), which the base neither allows nor answers", name, call.name, call.args)
				}
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
		t.Logf("%-28s %s (arguments of %d clone/fcntl/prlimit64 calls checked)", name+":", strings.Join(line, " "), checked)
	}
}

var straceCall = regexp.MustCompile(`^(\d+)\s+([a-z0-9_]+)\(`)

// narrowed are the base's syscalls whose arguments the filter checks;
// strace prints them raw so that the checks can be replayed.
var narrowed = []string{"clone", "fcntl", "prlimit64"}

// rawCall is one call of a narrowed syscall, as strace saw it.
type rawCall struct {
	name string
	args []uint64
}

// permits reports whether a rule of the profile allows or answers the call.
func (p *Profile) permits(name string, args []uint64) bool {
	for _, r := range p.rules {
		if r.Syscall != name {
			continue
		}
		ok := true
		for _, a := range r.Args {
			if int(a.Index) >= len(args) || args[a.Index]&a.Mask != a.Value {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// parseRawCall parses the arguments of a raw strace line such as
// "1234  fcntl(0, 0x1, 0) = 0" or "1234  clone(0x3d0f00, 0x7f... <unfinished ...>".
func parseRawCall(line string) (rawCall, bool) {
	m := straceCall.FindStringSubmatch(line)
	if m == nil || !slices.Contains(narrowed, m[2]) {
		return rawCall{}, false
	}
	rest := line[strings.Index(line, "(")+1:]
	if i := strings.Index(rest, " <unfinished"); i >= 0 {
		rest = rest[:i]
	} else if i := strings.LastIndex(rest, ")"); i >= 0 {
		rest = rest[:i]
	}
	c := rawCall{name: m[2]}
	for _, f := range strings.Split(rest, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 0, 64)
		if err != nil {
			return rawCall{}, false
		}
		c.args = append(c.args, v)
	}
	return c, true
}

// straceRun runs one program under strace and returns the syscalls it made
// after its execve returned (the child's own start-up is cut off), and the
// raw arguments of the narrowed ones.
func straceRun(t *testing.T, strace, progName string, env []string, proc bool, input []byte) (map[string]bool, []rawCall) {
	t.Helper()
	progPath := "/" + progName
	prog(t, progName)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "raw="+strings.Join(narrowed, ","), "-o", out, self, progPath)
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
	var calls []rawCall
	for _, l := range lines[start:] {
		if m := straceCall.FindStringSubmatch(l); m != nil {
			seen[m[2]] = true
		}
		if c, ok := parseRawCall(l); ok {
			calls = append(calls, c)
		}
	}
	return seen, calls
}
