//go:build cgo && seccomp

package seccomp

import (
	"errors"
	"slices"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

func TestPermissive(t *testing.T) {
	p, err := Permissive()
	if err != nil {
		t.Fatal(err)
	}
	allowed := p.Allowed()
	for _, sc := range []string{"getppid", "uname", "getrusage", "statfs", "socket", "clone", "fork", "sync", "kill"} {
		if !slices.Contains(allowed, sc) {
			t.Errorf("permissive profile does not allow %s", sc)
		}
	}
	for _, sc := range seccompprofiles.ForbiddenSyscalls() {
		if slices.Contains(allowed, sc) {
			t.Errorf("permissive profile allows the forbidden %s", sc)
		}
	}
	for _, r := range probes {
		if slices.Contains(allowed, r.Syscall) {
			t.Errorf("permissive profile allows the probe %s; want its errno answer", r.Syscall)
		}
	}
	// A grantable syscall keeps its narrowing: clone never makes namespaces.
	for _, r := range p.Rules() {
		if r.Syscall == "clone" && (len(r.Args) != 1 || r.Args[0].Mask&nsFlags != nsFlags || r.Args[0].Value != 0) {
			t.Errorf("clone rule %v, want namespace flags refused", r)
		}
	}
	if _, err := buildLibseccomp(p.Config()); err != nil {
		t.Errorf("libseccomp refuses the permissive profile: %v", err)
	}

	p, err = Permissive("ioctl")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.Allowed(), "ioctl") {
		t.Errorf("Permissive(ioctl) does not allow ioctl")
	}
	for _, r := range p.Rules() {
		if r.Syscall == "ioctl" && r.Action != ActAllow {
			t.Errorf("Permissive(ioctl) still has %v", r)
		}
	}
	for _, bad := range []struct {
		name string
		want error
	}{{"mount", ErrForbidden}, {"opne", ErrUnknownSyscall}} {
		if _, err := Permissive(bad.name); !errors.Is(err, bad.want) {
			t.Errorf("Permissive(%s) error %v, want %v", bad.name, err, bad.want)
		}
	}
}

func TestAdvise(t *testing.T) {
	basicIO, _ := seccompprofiles.Lookup("@basic-io")
	for _, tc := range []struct {
		name          string
		used          []string
		groups, extra []string
		forbidden     []string
		unknown       []string
	}{
		{"base only", []string{"read", "write", "futex", "exit_group"}, nil, nil, nil, nil},
		{"one extra", []string{"read", "getppid"}, nil, []string{"getppid"}, nil, nil},
		{"burst", []string{"uname", "getppid", "getrusage", "statfs"}, nil, []string{"getppid", "getrusage", "statfs"}, nil, nil},
		// Every non-base syscall of @basic-io: the group is one line.
		{"whole group", basicIO.Syscalls, []string{"@basic-io"}, nil, nil, nil},
		// A network client: most of @network-io and some of @io-event.
		{"network", []string{"socket", "connect", "sendto", "recvfrom", "getsockopt", "setsockopt", "getsockname", "getpeername",
			"shutdown", "sendmsg", "recvmsg", "bind", "listen", "accept4", "epoll_create1", "epoll_ctl", "epoll_pwait", "eventfd2"},
			[]string{"@network-io"}, nil, nil, nil},
		{"forbidden", []string{"mount", "getppid"}, nil, []string{"getppid"}, []string{"mount"}, nil},
		{"unknown", []string{"syscall_499"}, nil, nil, nil, []string{"syscall_499"}},
	} {
		a := Advise(tc.used)
		if !slices.Equal(a.Groups, orEmpty(tc.groups)) || !slices.Equal(a.Extra, orEmpty(tc.extra)) {
			t.Errorf("%s: groups %v extra %v, want %v %v", tc.name, a.Groups, a.Extra, tc.groups, tc.extra)
		}
		var forbidden []string
		for sc := range a.Forbidden {
			forbidden = append(forbidden, sc)
		}
		if !slices.Equal(forbidden, tc.forbidden) || !slices.Equal(a.Unknown, tc.unknown) {
			t.Errorf("%s: forbidden %v unknown %v, want %v %v", tc.name, forbidden, a.Unknown, tc.forbidden, tc.unknown)
		}
		// Whatever was chosen compiles and allows every grantable used syscall.
		p, err := Compile(manifest.Syscalls{Groups: a.Groups, Extra: a.Extra})
		if err != nil {
			t.Errorf("%s: the advice does not compile: %v", tc.name, err)
			continue
		}
		for _, sc := range tc.used {
			_, forbidden := seccompprofiles.Forbidden(sc)
			if !forbidden && known(sc) && !slices.Contains(p.Allowed(), sc) {
				t.Errorf("%s: the advice does not allow %s", tc.name, sc)
			}
		}
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
