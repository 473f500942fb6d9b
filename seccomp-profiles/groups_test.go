package seccompprofiles

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestEmbeddedData(t *testing.T) {
	if _, err := parse(files); err != nil {
		t.Fatalf("embedded data: %v", err)
	}
	names := Names()
	if !slices.IsSorted(names) || len(names) == 0 {
		t.Fatalf("Names() = %v, want a sorted non-empty list", names)
	}
	for _, g := range Groups() {
		if !slices.IsSorted(g.Syscalls) || len(slices.Compact(slices.Clone(g.Syscalls))) != len(g.Syscalls) {
			t.Errorf("%s: syscalls not sorted and unique: %v", g.Name, g.Syscalls)
		}
		for _, s := range g.Syscalls {
			if reason, ok := Forbidden(s); ok {
				t.Errorf("%s grants %s, which can never be granted (%s)", g.Name, s, reason)
			}
		}
	}
}

func TestBase(t *testing.T) {
	b := Base()
	if b.Name != BaseName {
		t.Fatalf("Base().Name = %q, want %q", b.Name, BaseName)
	}
	// The base includes @tcc-launch; both must be expanded into it.
	for _, s := range []string{"read", "write", "exit_group", "execve", "openat2"} {
		if !slices.Contains(b.Syscalls, s) {
			t.Errorf("base lacks %s", s)
		}
	}
	for _, s := range b.Syscalls {
		if reason, ok := Forbidden(s); ok {
			t.Errorf("base grants %s, which can never be granted (%s)", s, reason)
		}
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"@basic-io", true},
		{"@network-io", true},
		{"@process", true},
		{"@tcc-runtime", false}, // internal: always granted, never requested
		{"@tcc-launch", false},
		{"@mount", false},
		{"basic-io", false},
		{"", false},
	}
	for _, tt := range tests {
		g, ok := Lookup(tt.name)
		if ok != tt.ok {
			t.Errorf("Lookup(%q) ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if ok && (g.Name != tt.name || g.Description == "" || len(g.Syscalls) == 0) {
			t.Errorf("Lookup(%q) = %+v, want a filled group", tt.name, g)
		}
	}
}

func TestIncludesExpanded(t *testing.T) {
	net, _ := Lookup("@network-io")
	ev, _ := Lookup("@io-event")
	for _, s := range ev.Syscalls {
		if !slices.Contains(net.Syscalls, s) {
			t.Errorf("@network-io includes @io-event but lacks %s", s)
		}
	}
	if !slices.Equal(net.Includes, []string{"@io-event"}) {
		t.Errorf("@network-io Includes = %v, want [@io-event]", net.Includes)
	}
}

func TestGetUnknown(t *testing.T) {
	_, err := Get("@mount")
	if !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("Get(@mount) error = %v, want ErrUnknownGroup", err)
	}
	var ue *UnknownGroupError
	if !errors.As(err, &ue) || ue.Name != "@mount" || !slices.Equal(ue.Known, Names()) {
		t.Fatalf("Get(@mount) error = %#v, want UnknownGroupError listing the known groups", err)
	}
	if !strings.Contains(err.Error(), "@basic-io") {
		t.Errorf("error %q does not list the known groups", err)
	}
}

func TestResultsAreCopies(t *testing.T) {
	g, _ := Lookup("@basic-io")
	g.Syscalls[0] = "ptrace"
	again, _ := Lookup("@basic-io")
	if again.Syscalls[0] == "ptrace" {
		t.Fatal("Lookup returned shared storage")
	}
}

func TestForbidden(t *testing.T) {
	for _, s := range []string{"ptrace", "mount", "bpf", "unshare", "setns", "kexec_load", "keyctl", "clone3", "io_uring_setup"} {
		if reason, ok := Forbidden(s); !ok || reason == "" {
			t.Errorf("Forbidden(%q) = %q, %v; want a reason", s, reason, ok)
		}
	}
	if _, ok := Forbidden("read"); ok {
		t.Error("Forbidden(read) = true")
	}
	if all := ForbiddenSyscalls(); !slices.IsSorted(all) || !slices.Contains(all, "ptrace") {
		t.Errorf("ForbiddenSyscalls() = %v", all)
	}
}

func TestParseRejects(t *testing.T) {
	const never = "- reason: r\n  syscalls: [ptrace]\n"
	const base = "name: \"@tcc-runtime\"\ndescription: d\ninternal: true\nsyscalls: [read]\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"name mismatch", map[string]string{"groups/a.yaml": "name: \"@b\"\ndescription: d\nsyscalls: [read]\n"}, `want "@a"`},
		{"unknown field", map[string]string{"groups/a.yaml": "name: \"@a\"\ndescription: d\nsyscall: [read]\n"}, "not found"},
		{"forbidden", map[string]string{"groups/a.yaml": "name: \"@a\"\ndescription: d\nsyscalls: [ptrace]\n"}, "can never be granted"},
		{"duplicate", map[string]string{"groups/a.yaml": "name: \"@a\"\ndescription: d\nsyscalls: [read, read]\n"}, "listed twice"},
		{"bad syscall", map[string]string{"groups/a.yaml": "name: \"@a\"\ndescription: d\nsyscalls: [Read]\n"}, "bad syscall name"},
		{"no description", map[string]string{"groups/a.yaml": "name: \"@a\"\nsyscalls: [read]\n"}, "description"},
		{"unknown include", map[string]string{"groups/a.yaml": "name: \"@a\"\ndescription: d\ninclude: [\"@x\"]\nsyscalls: [read]\n"}, "unknown group @x"},
		{"cycle", map[string]string{
			"groups/a.yaml": "name: \"@a\"\ndescription: d\ninclude: [\"@b\"]\nsyscalls: [read]\n",
			"groups/b.yaml": "name: \"@b\"\ndescription: d\ninclude: [\"@a\"]\nsyscalls: [write]\n",
		}, "include cycle"},
		{"no base", map[string]string{}, "base group"},
		{"never twice", map[string]string{"never.yaml": never + "- reason: s\n  syscalls: [ptrace]\n"}, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"never.yaml":              {Data: []byte(never)},
				"groups/tcc-runtime.yaml": {Data: []byte(base)},
			}
			if tt.name == "no base" {
				delete(fsys, "groups/tcc-runtime.yaml")
			}
			for name, data := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(data)}
			}
			_, err := parse(fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
