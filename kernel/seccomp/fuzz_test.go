//go:build cgo && seccomp

package seccomp

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

// Group names the fuzzer may request besides the shipped ones (bits 24-31
// of its mask): internal, unknown and misspelt groups.
var fuzzJunkGroups = []string{"@tcc-runtime", "@tcc-launch", "@mount", "", "@BASIC-IO", "basic-io", "@privileged", "@basic-io "}

var requestField = regexp.MustCompile(`^syscalls\.(groups|extra)\[(\d+)\]$`)

// FuzzCompile checks that the compiler never allows a syscall that was not
// asked for: Allowed() ⊆ base ∪ requested groups ∪ requested extra, nothing
// forbidden, every requested extra allowed, the libcontainer allow rules
// exactly Allowed(); and that it fails exactly when a request is invalid,
// naming the field. The unsafe compiler must keep the same bound, minus the
// forbidden list. Seeds: testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	f.Add(uint32(0), "")
	f.Add(uint32(1), "read")
	f.Add(uint32(0xff), "getppid,ioctl,rseq")
	f.Add(uint32(1<<24), "opne")
	f.Add(uint32(0), "ptrace,unshare,mount")
	f.Add(uint32(0), "socketcall,vm86,,Open,read ")

	names := seccompprofiles.Names()
	if len(names) > 24 {
		f.Fatalf("%d groups: the mask has room for 24", len(names))
	}
	base := seccompprofiles.Base().Syscalls

	f.Fuzz(func(t *testing.T, mask uint32, extra string) {
		var req manifest.Syscalls
		for i, n := range names {
			if mask&(1<<i) != 0 {
				req.Groups = append(req.Groups, n)
			}
		}
		for i, n := range fuzzJunkGroups {
			if mask&(1<<(24+i)) != 0 {
				req.Groups = append(req.Groups, n)
			}
		}
		if extra != "" {
			req.Extra = strings.Split(extra, ",")
		}

		bound := map[string]bool{}
		for _, s := range base {
			bound[s] = true
		}
		valid := true
		for _, g := range req.Groups {
			grp, ok := seccompprofiles.Lookup(g)
			valid = valid && ok
			for _, s := range grp.Syscalls {
				bound[s] = true
			}
		}
		validUnsafe := valid
		for _, e := range req.Extra {
			_, forbidden := seccompprofiles.Forbidden(e)
			isKnown := known(e)
			valid = valid && isKnown && !forbidden
			validUnsafe = validUnsafe && isKnown
			bound[e] = true
		}

		for _, unsafe := range []bool{false, true} {
			compile, wantOK := Compile, valid
			if unsafe {
				compile, wantOK = CompileUnsafeForTest, validUnsafe
			}
			p, err := compile(req)
			if err != nil {
				if wantOK {
					t.Fatalf("compile(%q, unsafe=%v) failed on a valid request: %v", req, unsafe, err)
				}
				checkRequestErrors(t, req, err)
				continue
			}
			if !wantOK {
				t.Fatalf("compile(%q, unsafe=%v) accepted an invalid request: %v", req, unsafe, p.Allowed())
			}
			for _, s := range p.Allowed() {
				if !bound[s] {
					t.Errorf("compile(%q, unsafe=%v) allows %s, which was not asked for", req, unsafe, s)
				}
				if _, forbidden := seccompprofiles.Forbidden(s); forbidden && !unsafe {
					t.Errorf("compile(%q) allows forbidden %s", req, s)
				}
			}
			allowed := map[string]bool{}
			for _, s := range p.Allowed() {
				allowed[s] = true
			}
			for _, e := range req.Extra {
				if !allowed[e] {
					t.Errorf("compile(%q, unsafe=%v) does not allow requested %s", req, unsafe, e)
				}
			}
			checkConfig(t, p)
		}
	})
}

func checkRequestErrors(t *testing.T, req manifest.Syscalls, err error) {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %q is not a list of request errors", err)
	}
	for _, e := range joined.Unwrap() {
		var re *RequestError
		if !errors.As(e, &re) {
			t.Fatalf("error %q is not a *RequestError", e)
		}
		m := requestField.FindStringSubmatch(re.Field)
		if m == nil {
			t.Fatalf("error %q names field %q", e, re.Field)
		}
		if !errors.Is(e, ErrUnknownGroup) && !errors.Is(e, ErrUnknownSyscall) && !errors.Is(e, ErrForbidden) {
			t.Fatalf("error %q wraps no sentinel", e)
		}
	}
}
