//go:build cgo && seccomp

package seccomp

import (
	"errors"
	"fmt"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

func mustCompile(t testing.TB, s manifest.Syscalls) *Profile {
	t.Helper()
	p, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", s, err)
	}
	return p
}

func rulesFor(p *Profile, name string) []Rule {
	var out []Rule
	for _, r := range p.Rules() {
		if r.Syscall == name {
			out = append(out, r)
		}
	}
	return out
}

func TestCompileBase(t *testing.T) {
	p := mustCompile(t, manifest.Syscalls{})
	if got, want := p.Allowed(), seccompprofiles.Base().Syscalls; !slices.Equal(got, want) {
		t.Fatalf("Allowed() = %v, want the base %v", got, want)
	}
	if p.Unsafe() {
		t.Error("Compile returned an unsafe profile")
	}
	for _, probe := range []string{"clone3", "rseq", "copy_file_range", "readlink", "ioctl", "prctl"} {
		if slices.Contains(p.Allowed(), probe) {
			t.Errorf("base allows %s, want an errno answer only", probe)
		}
		rs := rulesFor(p, probe)
		if len(rs) == 0 || rs[0].Action != ActErrno {
			t.Errorf("%s rules = %v, want errno rules", probe, rs)
		}
	}
}

func TestNarrowing(t *testing.T) {
	tests := []struct {
		name    string
		req     manifest.Syscalls
		syscall string
		want    []string // Rule.String() of every rule for syscall
	}{
		{"clone from base: threads only", manifest.Syscalls{}, "clone",
			[]string{"allow clone if arg0&0x7e030000 == 0x10000"}},
		{"clone from @process: no namespaces", manifest.Syscalls{Groups: []string{"@process"}}, "clone",
			[]string{"allow clone if arg0&0x7e020000 == 0x0"}},
		{"clone as extra: no namespaces", manifest.Syscalls{Extra: []string{"clone"}}, "clone",
			[]string{"allow clone if arg0&0x7e020000 == 0x0"}},
		{"prlimit64 from base: own process, read any, set NOFILE", manifest.Syscalls{}, "prlimit64",
			[]string{"allow prlimit64 if arg0 == 0x0 && arg2 == 0x0", "allow prlimit64 if arg0 == 0x0 && arg1 == 0x7"}},
		{"prlimit64 as extra: never RLIMIT_CORE", manifest.Syscalls{Extra: []string{"prlimit64"}}, "prlimit64",
			append([]string{"allow prlimit64 if arg0 == 0x0 && arg2 == 0x0"}, ruleList("allow prlimit64 if arg0 == 0x0 && arg1 == %#x", 0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)...)},
		{"setrlimit: never RLIMIT_CORE", manifest.Syscalls{Extra: []string{"setrlimit"}}, "setrlimit",
			ruleList("allow setrlimit if arg0 == %#x", 0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)},
		{"fcntl from base: descriptor commands", manifest.Syscalls{}, "fcntl",
			ruleList("allow fcntl if arg1 == %#x", 0, 1, 2, 3, 4, 1030)},
		{"fcntl as extra: all", manifest.Syscalls{Extra: []string{"fcntl"}}, "fcntl",
			[]string{"allow fcntl"}},
		{"memfd_create: sealed against exec", manifest.Syscalls{Groups: []string{"@ipc"}}, "memfd_create",
			[]string{"allow memfd_create if arg1&0x18 == 0x8"}},
		{"socketpair: unix only", manifest.Syscalls{Groups: []string{"@network-io"}}, "socketpair",
			[]string{
				"allow socketpair if arg0 == 0x1 && arg1&0xf == 0x1 && arg2 == 0x0",
				"allow socketpair if arg0 == 0x1 && arg1&0xf == 0x2 && arg2 == 0x0",
			}},
		{"socket: unix, inet, inet6", manifest.Syscalls{Extra: []string{"socket"}}, "socket",
			[]string{
				"allow socket if arg0 == 0x1 && arg1&0xf == 0x1 && arg2 == 0x0",
				"allow socket if arg0 == 0x1 && arg1&0xf == 0x2 && arg2 == 0x0",
				"allow socket if arg0 == 0x2 && arg1&0xf == 0x1 && arg2 == 0x0",
				"allow socket if arg0 == 0x2 && arg1&0xf == 0x1 && arg2 == 0x6",
				"allow socket if arg0 == 0x2 && arg1&0xf == 0x2 && arg2 == 0x0",
				"allow socket if arg0 == 0x2 && arg1&0xf == 0x2 && arg2 == 0x11",
				"allow socket if arg0 == 0xa && arg1&0xf == 0x1 && arg2 == 0x0",
				"allow socket if arg0 == 0xa && arg1&0xf == 0x1 && arg2 == 0x6",
				"allow socket if arg0 == 0xa && arg1&0xf == 0x2 && arg2 == 0x0",
				"allow socket if arg0 == 0xa && arg1&0xf == 0x2 && arg2 == 0x11",
			}},
		{"ioctl probes", manifest.Syscalls{}, "ioctl",
			[]string{"errno ENOTTY ioctl if arg1 == 0x5401", "errno ENOTTY ioctl if arg1 == 0x5413"}},
		{"ioctl granted: probes dropped", manifest.Syscalls{Extra: []string{"ioctl"}}, "ioctl",
			[]string{"allow ioctl"}},
		{"readlink granted by @file-system", manifest.Syscalls{Groups: []string{"@file-system"}}, "readlink",
			[]string{"allow readlink"}},
		{"rseq granted as extra", manifest.Syscalls{Extra: []string{"rseq"}}, "rseq",
			[]string{"allow rseq"}},
		{"clone3 stays ENOSYS with @process", manifest.Syscalls{Groups: []string{"@process"}}, "clone3",
			[]string{"errno ENOSYS clone3"}},
		{"prctl granted by @process", manifest.Syscalls{Groups: []string{"@process"}}, "prctl",
			[]string{"allow prctl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range rulesFor(mustCompile(t, tt.req), tt.syscall) {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("rules for %s:\ngot  %q\nwant %q", tt.syscall, got, tt.want)
			}
		})
	}
}

// ruleList formats one rule per value.
func ruleList(format string, values ...int) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = fmt.Sprintf(format, v)
	}
	return out
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		req  manifest.Syscalls
		is   []error
		msgs []string // each must appear in the error text
	}{
		{"unknown syscall", manifest.Syscalls{Extra: []string{"opne"}},
			[]error{ErrUnknownSyscall}, []string{`syscalls.extra[0]: unknown syscall "opne" on x86_64`}},
		{"other arch's syscall", manifest.Syscalls{Extra: []string{"read", "socketcall"}},
			[]error{ErrUnknownSyscall}, []string{`syscalls.extra[1]: unknown syscall "socketcall" on x86_64`}},
		{"i386-only syscall", manifest.Syscalls{Extra: []string{"vm86"}},
			[]error{ErrUnknownSyscall}, []string{`unknown syscall "vm86"`}},
		{"not a name", manifest.Syscalls{Extra: []string{"Open"}},
			[]error{ErrUnknownSyscall}, []string{`unknown syscall "Open"`}},
		{"empty name", manifest.Syscalls{Extra: []string{""}},
			[]error{ErrUnknownSyscall}, []string{`syscalls.extra[0]: unknown syscall ""`}},
		{"forbidden", manifest.Syscalls{Extra: []string{"ptrace"}},
			[]error{ErrForbidden}, []string{`syscalls.extra[0]: "ptrace" can never be granted: reads or controls another process`}},
		{"forbidden clone3", manifest.Syscalls{Extra: []string{"clone3"}},
			[]error{ErrForbidden}, []string{`"clone3" can never be granted: its flags live in memory`}},
		{"unknown group", manifest.Syscalls{Groups: []string{"@basic-io", "@mount"}},
			[]error{ErrUnknownGroup}, []string{`syscalls.groups[1]: unknown syscall group "@mount" (known: @basic-io,`}},
		{"base group named", manifest.Syscalls{Groups: []string{"@tcc-runtime"}},
			[]error{ErrUnknownGroup}, []string{`syscalls.groups[0]: unknown syscall group "@tcc-runtime": it is granted to every cell; remove it`}},
		{"internal group named", manifest.Syscalls{Groups: []string{"@tcc-launch"}},
			[]error{ErrUnknownGroup}, []string{`syscalls.groups[0]: unknown syscall group "@tcc-launch"`}},
		{"all mistakes reported", manifest.Syscalls{Groups: []string{"@nope"}, Extra: []string{"read", "mount", "opne"}},
			[]error{ErrUnknownGroup, ErrForbidden, ErrUnknownSyscall},
			[]string{"syscalls.groups[0]", "syscalls.extra[1]", "syscalls.extra[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.req)
			if err == nil {
				t.Fatalf("Compile(%+v) = %v, want an error", tt.req, p.Allowed())
			}
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("error %q is not %v", err, want)
				}
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Errorf("error %q has no *RequestError", err)
			}
			for _, msg := range tt.msgs {
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("error %q does not contain %q", err, msg)
				}
			}
		})
	}
}

func TestCompileUnsafeForTest(t *testing.T) {
	req := manifest.Syscalls{Groups: []string{"@network-io"}, Extra: []string{"ptrace", "unshare", "mount", "clone3"}}
	if _, err := Compile(req); !errors.Is(err, ErrForbidden) {
		t.Fatalf("Compile(%+v) error = %v, want ErrForbidden", req, err)
	}
	p, err := CompileUnsafeForTest(req)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Unsafe() {
		t.Error("Unsafe() = false")
	}
	for _, s := range []string{"ptrace", "unshare", "mount", "clone3", "socket", "clone"} {
		if !slices.Contains(p.Allowed(), s) {
			t.Errorf("unsafe profile does not allow %s", s)
		}
	}
	for _, r := range p.Rules() {
		if r.Action == ActAllow && len(r.Args) > 0 {
			t.Errorf("unsafe profile narrows %s", r)
		}
	}
	// Still no unknown names, even unsafe.
	if _, err := CompileUnsafeForTest(manifest.Syscalls{Extra: []string{"opne"}}); !errors.Is(err, ErrUnknownSyscall) {
		t.Errorf("unsafe compile of opne: error %v, want ErrUnknownSyscall", err)
	}
}

func TestConfig(t *testing.T) {
	p := mustCompile(t, manifest.Syscalls{Groups: []string{"@network-io", "@process"}, Extra: []string{"ioctl"}})
	c := p.Config()
	if c.DefaultAction != configs.KillProcess {
		t.Errorf("DefaultAction = %v, want KillProcess", c.DefaultAction)
	}
	if !slices.Equal(c.Architectures, []string{"amd64"}) {
		t.Errorf("Architectures = %v, want [amd64]", c.Architectures)
	}
	if c.DefaultErrnoRet != nil || len(c.Flags) != 0 || c.ListenerPath != "" {
		t.Errorf("unexpected settings: errno %v flags %v listener %q", c.DefaultErrnoRet, c.Flags, c.ListenerPath)
	}
	checkConfig(t, p)

	// Config hands out copies.
	c.Syscalls[0].Name = "ptrace"
	if p.Config().Syscalls[0].Name == "ptrace" {
		t.Error("Config returned shared storage")
	}
}

// checkConfig checks the libcontainer config against the profile: allow
// rules name exactly Allowed(), errno rules carry their errno and never
// name an allowed syscall, and no rule has two conditions on one argument
// (libcontainer would OR them).
func checkConfig(t testing.TB, p *Profile) {
	t.Helper()
	allow := map[string]bool{}
	for _, s := range p.Config().Syscalls {
		indexes := map[uint]bool{}
		for _, a := range s.Args {
			if indexes[a.Index] {
				t.Errorf("%s has two conditions on arg%d", s.Name, a.Index)
			}
			indexes[a.Index] = true
			if a.Op != configs.EqualTo && a.Op != configs.MaskEqualTo {
				t.Errorf("%s: operator %v", s.Name, a.Op)
			}
		}
		switch s.Action {
		case configs.Allow:
			allow[s.Name] = true
		case configs.Errno:
			if s.ErrnoRet == nil || *s.ErrnoRet == 0 {
				t.Errorf("errno rule for %s has no errno", s.Name)
			}
			if slices.Contains(p.Allowed(), s.Name) {
				t.Errorf("%s is allowed and has an errno rule", s.Name)
			}
		default:
			t.Errorf("%s: action %v", s.Name, s.Action)
		}
	}
	var names []string
	for n := range allow {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, p.Allowed()) {
		t.Errorf("allow rules name %v, Allowed() = %v", names, p.Allowed())
	}
}

func TestRuleString(t *testing.T) {
	tests := []struct {
		r    Rule
		want string
	}{
		{Rule{Syscall: "read", Action: ActAllow}, "allow read"},
		{Rule{Syscall: "clone3", Action: ActErrno, Errno: syscall.ENOSYS}, "errno ENOSYS clone3"},
		{Rule{Syscall: "x", Action: ActErrno, Errno: syscall.EBADF}, "errno errno(9) x"},
		{Rule{Syscall: "clone", Action: ActAllow, Args: []Arg{{Index: 0, Mask: unix.CLONE_NEWUSER, Value: 0}}}, "allow clone if arg0&0x10000000 == 0x0"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestUnsafeOnlyInTests fails if any non-test Go file in the module refers
// to CompileUnsafeForTest (a call, or the function as a value), other than
// its definition and files built only with the tcc_unsafe_test tag. A file
// that does not parse fails the test too: it could hide a reference.
func TestUnsafeOnlyInTests(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	hatchFiles := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution|parser.ParseComments)
		if err != nil {
			t.Errorf("%s does not parse, so it cannot be checked: %v", path, err)
			return nil
		}
		if onlyWithTag(f, "tcc_unsafe_test") {
			hatchFiles++
			return nil
		}
		var visit func(ast.Node) bool
		visit = func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				// Its own definition: only the body is looked at.
				if n.Recv == nil && n.Name.Name == "CompileUnsafeForTest" && filepath.Dir(path) == filepath.Join(root, "kernel", "seccomp") {
					if n.Body != nil {
						ast.Inspect(n.Body, visit)
					}
					return false
				}
			case *ast.Ident:
				if n.Name == "CompileUnsafeForTest" {
					t.Errorf("%s refers to CompileUnsafeForTest outside a test and outside the tcc_unsafe_test build", path)
				}
			}
			return true
		}
		ast.Inspect(f, visit)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if hatchFiles == 0 {
		t.Error("no file is built only with the tcc_unsafe_test tag: the test hatch moved, update this test")
	}
}

// onlyWithTag reports whether f's build constraint requires tag.
func onlyWithTag(f *ast.File, tag string) bool {
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			if !constraint.IsGoBuild(c.Text) {
				continue
			}
			expr, err := constraint.Parse(c.Text)
			if err != nil {
				return false
			}
			// Required: false without the tag, whatever else holds.
			return !expr.Eval(func(t string) bool { return t != tag })
		}
	}
	return false
}
