//go:build cgo && seccomp

package seccomp

import (
	"slices"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

// TestEveryGroupCompiles compiles each shipped group alone and all of them
// together, and checks that every syscall they name exists on x86_64 (a
// name libseccomp does not know would be dropped by libcontainer without a
// word).
func TestEveryGroupCompiles(t *testing.T) {
	all := manifest.Syscalls{Groups: seccompprofiles.Names()}
	for _, name := range append(seccompprofiles.Names(), "all") {
		t.Run(name, func(t *testing.T) {
			req := manifest.Syscalls{Groups: []string{name}}
			var want []string
			if name == "all" {
				req = all
				for _, g := range seccompprofiles.Groups() {
					want = append(want, g.Syscalls...)
				}
			} else {
				g, _ := seccompprofiles.Lookup(name)
				want = g.Syscalls
			}
			for _, s := range want {
				if !known(s) {
					t.Errorf("%s lists %q, unknown to libseccomp on x86_64", name, s)
				}
			}
			p := mustCompile(t, req)
			for _, s := range want {
				if !slices.Contains(p.Allowed(), s) {
					t.Errorf("profile of %s does not allow %s", name, s)
				}
			}
			checkConfig(t, p)
		})
	}
}

func TestDataNamesResolve(t *testing.T) {
	for _, s := range seccompprofiles.Base().Syscalls {
		if !known(s) {
			t.Errorf("base lists %q, unknown on x86_64", s)
		}
	}
	for _, s := range seccompprofiles.ForbiddenSyscalls() {
		if !known(s) {
			t.Errorf("never.yaml lists %q, unknown on x86_64 (a typo would forbid nothing)", s)
		}
	}
	for _, r := range probes {
		if !known(r.Syscall) {
			t.Errorf("probe %s unknown on x86_64", r.Syscall)
		}
	}
}
