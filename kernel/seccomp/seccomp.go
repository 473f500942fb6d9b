//go:build cgo && seccomp

package seccomp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

var (
	// ErrUnknownGroup: a requested group is not shipped in seccomp-profiles.
	ErrUnknownGroup = seccompprofiles.ErrUnknownGroup
	// ErrUnknownSyscall: a requested syscall does not exist on x86_64.
	ErrUnknownSyscall = errors.New("unknown syscall")
	// ErrForbidden: a requested syscall may never be granted to a cell.
	ErrForbidden = errors.New("can never be granted")
	// ErrNotSupported: profiles are compiled for native x86_64 only.
	ErrNotSupported = errors.New("seccomp profiles are supported on native x86_64 only")
)

// RequestError says which entry of a manifest's syscalls section is wrong.
// Err wraps ErrUnknownGroup, ErrUnknownSyscall or ErrForbidden.
type RequestError struct {
	Field string // manifest field path, e.g. "syscalls.extra[2]"
	Err   error
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

// Action is what the filter does when a rule matches.
type Action int

const (
	ActAllow Action = iota + 1 // run the syscall
	ActErrno                   // fail it with Rule.Errno without running it
)

// Arg is one argument condition: args[Index] & Mask == Value.
type Arg struct {
	Index uint
	Mask  uint64
	Value uint64
}

// Rule is one entry of the filter. All Args must hold for it to match; a
// syscall may have several rules (any may match). Anything no rule matches
// kills the process.
type Rule struct {
	Syscall string
	Action  Action
	Errno   syscall.Errno // for ActErrno
	Args    []Arg
}

// String renders the rule for people, e.g.
// "allow socket if arg0 == 0x2 && arg1&0xf == 0x1".
func (r Rule) String() string {
	var b strings.Builder
	switch r.Action {
	case ActAllow:
		b.WriteString("allow ")
	case ActErrno:
		fmt.Fprintf(&b, "errno %s ", errnoName(r.Errno))
	}
	b.WriteString(r.Syscall)
	for i, a := range r.Args {
		if i == 0 {
			b.WriteString(" if ")
		} else {
			b.WriteString(" && ")
		}
		if a.Mask == ^uint64(0) {
			fmt.Fprintf(&b, "arg%d == %#x", a.Index, a.Value)
		} else {
			fmt.Fprintf(&b, "arg%d&%#x == %#x", a.Index, a.Mask, a.Value)
		}
	}
	return b.String()
}

// Profile is a compiled syscall contract. It is immutable; Config returns a
// fresh copy each call.
type Profile struct {
	allowed []string
	rules   []Rule
	unsafe  bool
}

// Allowed returns the syscalls the cell may make, sorted: every syscall
// with an allow rule, whether or not its arguments are narrowed.
func (p *Profile) Allowed() []string { return slices.Clone(p.allowed) }

// Rules returns the filter's rules in the order they are handed to
// libcontainer.
func (p *Profile) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = r
		out[i].Args = slices.Clone(r.Args)
	}
	return out
}

// Unsafe reports whether the profile came from CompileUnsafeForTest.
func (p *Profile) Unsafe() bool { return p.unsafe }

// Config returns the profile as libcontainer's seccomp configuration: kill
// the process by default, native x86_64 only, no filter flags.
func (p *Profile) Config() *configs.Seccomp {
	c := &configs.Seccomp{
		DefaultAction: configs.KillProcess,
		Architectures: []string{"amd64"},
		Syscalls:      make([]*configs.Syscall, 0, len(p.rules)),
	}
	for _, r := range p.rules {
		s := &configs.Syscall{Name: r.Syscall, Action: configs.Allow}
		if r.Action == ActErrno {
			errno := uint(r.Errno)
			s.Action, s.ErrnoRet = configs.Errno, &errno
		}
		// libcontainer ANDs the conditions of one entry, unless two test
		// the same argument: then it adds each condition as a rule of its
		// own, ORed, the other arguments unchecked. A Rule never has two
		// on one argument (rules.go), so this is always an AND.
		for _, a := range r.Args {
			arg := &configs.Arg{Index: a.Index, Value: a.Mask, ValueTwo: a.Value, Op: configs.MaskEqualTo}
			if a.Mask == ^uint64(0) {
				arg.Value, arg.ValueTwo, arg.Op = a.Value, 0, configs.EqualTo
			}
			s.Args = append(s.Args, arg)
		}
		c.Syscalls = append(c.Syscalls, s)
	}
	return c
}

// Compile builds the filter for a cell's syscall contract: the base group,
// the requested groups and the requested extra syscalls, with forbidden
// syscalls refused. Every mistake is reported, each as a *RequestError
// naming its manifest field.
func Compile(s manifest.Syscalls) (*Profile, error) { return compile(s, false) }

// CompileUnsafeForTest is Compile without the forbidden list and without
// argument narrowing: a requested ptrace or mount is allowed, clone may
// create namespaces, socket may open netlink. It exists only so adversarial
// tests can prove that namespaces and capabilities stop what the filter
// lets through. Production code must never call it.
func CompileUnsafeForTest(s manifest.Syscalls) (*Profile, error) { return compile(s, true) }

func compile(s manifest.Syscalls, unsafe bool) (*Profile, error) {
	if err := checkArch(); err != nil {
		return nil, err
	}

	var errs []error
	base := seccompprofiles.Base().Syscalls
	requested := map[string]bool{}
	for i, name := range s.Groups {
		field := fmt.Sprintf("syscalls.groups[%d]", i)
		if name == seccompprofiles.BaseName {
			errs = append(errs, &RequestError{Field: field, Err: fmt.Errorf("%w %q: it is granted to every cell; remove it", ErrUnknownGroup, name)})
			continue
		}
		g, err := seccompprofiles.Get(name)
		if err != nil {
			errs = append(errs, &RequestError{Field: field, Err: err})
			continue
		}
		for _, sc := range g.Syscalls {
			requested[sc] = true
		}
	}
	for i, name := range s.Extra {
		field := fmt.Sprintf("syscalls.extra[%d]", i)
		if !known(name) {
			errs = append(errs, &RequestError{Field: field, Err: fmt.Errorf("%w %q on x86_64", ErrUnknownSyscall, name)})
			continue
		}
		if reason, ok := seccompprofiles.Forbidden(name); ok && !unsafe {
			errs = append(errs, &RequestError{Field: field, Err: fmt.Errorf("%q %w: %s", name, ErrForbidden, reason)})
			continue
		}
		requested[name] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	granted := map[string]bool{}
	for _, sc := range base {
		granted[sc] = true
	}
	for sc := range requested {
		granted[sc] = true
	}
	allowed := make([]string, 0, len(granted))
	for sc := range granted {
		// Group data is checked by tests; this keeps a bad edit from
		// reaching a filter, where libcontainer would skip the name silently.
		if !known(sc) {
			return nil, fmt.Errorf("seccomp-profiles grants %q, which libseccomp does not know on x86_64", sc)
		}
		allowed = append(allowed, sc)
	}
	slices.Sort(allowed)

	p := &Profile{allowed: allowed, unsafe: unsafe}
	for _, sc := range allowed {
		if unsafe {
			p.rules = append(p.rules, Rule{Syscall: sc, Action: ActAllow})
			continue
		}
		p.rules = append(p.rules, allowRules(sc, requested[sc])...)
	}
	p.addProbes(granted)
	return p, nil
}

// checkArch refuses to build profiles anywhere but on native x86_64.
func checkArch() error {
	if arch, err := libseccomp.GetNativeArch(); err != nil || arch != libseccomp.ArchAMD64 {
		return ErrNotSupported
	}
	return nil
}

// addProbes adds the errno answers of the probes the profile does not
// grant.
func (p *Profile) addProbes(granted map[string]bool) {
	for _, r := range probes {
		if !granted[r.Syscall] {
			p.rules = append(p.rules, r)
		}
	}
}

// known reports whether name is a syscall name that libseccomp resolves to
// a real x86_64 syscall. Names of other architectures' syscalls
// (socketcall, vm86) resolve to negative pseudo-numbers there and are not
// known.
func known(name string) bool {
	if !seccompprofiles.ValidSyscallName(name) {
		return false
	}
	nr, err := libseccomp.GetSyscallFromNameByArch(name, libseccomp.ArchAMD64)
	return err == nil && nr >= 0
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOSYS:
		return "ENOSYS"
	case syscall.EACCES:
		return "EACCES"
	case syscall.ENOTTY:
		return "ENOTTY"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EPERM:
		return "EPERM"
	}
	return fmt.Sprintf("errno(%d)", int(e))
}
