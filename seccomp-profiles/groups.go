package seccompprofiles

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// BaseName is the group every profile includes.
const BaseName = "@tcc-runtime"

// ErrUnknownGroup is returned for a group name this package does not ship.
var ErrUnknownGroup = errors.New("unknown syscall group")

// Group is a named set of syscalls. Syscalls is sorted, without duplicates,
// with the syscalls of included groups already merged in.
type Group struct {
	Name        string   // "@basic-io"
	Description string   // one line
	Syscalls    []string // x86_64 names
	Includes    []string // groups this one includes (their syscalls are in Syscalls)
}

// UnknownGroupError names a group that does not exist and the ones that do.
type UnknownGroupError struct {
	Name  string
	Known []string
}

func (e *UnknownGroupError) Error() string {
	return fmt.Sprintf("unknown syscall group %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

func (e *UnknownGroupError) Unwrap() error { return ErrUnknownGroup }

// Lookup returns the requestable group called name. Internal groups (the
// base) are not requestable.
func Lookup(name string) (Group, bool) {
	g, ok := load().groups[name]
	if !ok || g.internal {
		return Group{}, false
	}
	return g.export(), true
}

// Get is Lookup with an error that lists the known groups.
func Get(name string) (Group, error) {
	g, ok := Lookup(name)
	if !ok {
		return Group{}, &UnknownGroupError{Name: name, Known: Names()}
	}
	return g, nil
}

// Groups returns every requestable group, sorted by name.
func Groups() []Group {
	var out []Group
	for _, name := range Names() {
		out = append(out, load().groups[name].export())
	}
	return out
}

// Names returns the names of the requestable groups, sorted.
func Names() []string {
	var out []string
	for name, g := range load().groups {
		if !g.internal {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Base returns @tcc-runtime, the group every profile includes.
func Base() Group { return load().groups[BaseName].export() }

// Forbidden reports whether no cell may ever be granted syscall name, and
// why.
func Forbidden(name string) (reason string, ok bool) {
	reason, ok = load().never[name]
	return reason, ok
}

// ValidSyscallName reports whether name has the form of a syscall name
// (lower case, digits and underscores). It says nothing of whether the
// syscall exists.
func ValidSyscallName(name string) bool { return syscallName.MatchString(name) }

// ForbiddenSyscalls returns every syscall no cell may be granted, sorted.
func ForbiddenSyscalls() []string {
	return slices.Sorted(maps.Keys(load().never))
}

//go:embed groups/*.yaml never.yaml
var files embed.FS

type group struct {
	Group
	internal bool
}

func (g group) export() Group {
	g.Syscalls = slices.Clone(g.Syscalls)
	g.Includes = slices.Clone(g.Includes)
	return g.Group
}

type catalogue struct {
	groups map[string]group
	never  map[string]string // syscall -> reason
}

// The data is embedded and checked by this package's tests, so a parse
// error is a build defect, not a run-time condition: load panics like
// regexp.MustCompile.
var load = sync.OnceValue(func() *catalogue {
	c, err := parse(files)
	if err != nil {
		panic("seccompprofiles: embedded data: " + err.Error())
	}
	return c
})

// groupFile is the schema of one groups/*.yaml file.
type groupFile struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Internal    bool     `yaml:"internal"`
	Include     []string `yaml:"include"`
	Syscalls    []string `yaml:"syscalls"`
}

// neverEntry is one entry of never.yaml.
type neverEntry struct {
	Reason   string   `yaml:"reason"`
	Syscalls []string `yaml:"syscalls"`
}

var (
	groupName   = regexp.MustCompile(`^@[a-z][a-z0-9-]*$`)
	syscallName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

func parse(fsys fs.FS) (*catalogue, error) {
	c := &catalogue{groups: map[string]group{}, never: map[string]string{}}

	var never []neverEntry
	if err := decode(fsys, "never.yaml", &never); err != nil {
		return nil, err
	}
	for i, e := range never {
		if e.Reason == "" || len(e.Syscalls) == 0 {
			return nil, fmt.Errorf("never.yaml: entry %d: needs a reason and syscalls", i)
		}
		for _, s := range e.Syscalls {
			if !syscallName.MatchString(s) {
				return nil, fmt.Errorf("never.yaml: entry %d: bad syscall name %q", i, s)
			}
			if _, dup := c.never[s]; dup {
				return nil, fmt.Errorf("never.yaml: %q listed twice", s)
			}
			c.never[s] = e.Reason
		}
	}

	paths, err := fs.Glob(fsys, "groups/*.yaml")
	if err != nil {
		return nil, err
	}
	raw := map[string]groupFile{}
	for _, p := range paths {
		var f groupFile
		if err := decode(fsys, p, &f); err != nil {
			return nil, err
		}
		if err := f.check(p, c.never); err != nil {
			return nil, err
		}
		if _, dup := raw[f.Name]; dup {
			return nil, fmt.Errorf("%s: group %s defined twice", p, f.Name)
		}
		raw[f.Name] = f
	}

	for name, f := range raw {
		set := map[string]bool{}
		if err := expand(raw, name, set, nil); err != nil {
			return nil, err
		}
		c.groups[name] = group{
			Group: Group{
				Name:        name,
				Description: f.Description,
				Syscalls:    slices.Sorted(maps.Keys(set)),
				Includes:    slices.Clone(f.Include),
			},
			internal: f.Internal,
		}
	}
	if g, ok := c.groups[BaseName]; !ok || !g.internal {
		return nil, fmt.Errorf("base group %s missing or not internal", BaseName)
	}
	return c, nil
}

func decode(fsys fs.FS, name string, v any) error {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (f *groupFile) check(p string, never map[string]string) error {
	if want := "@" + strings.TrimSuffix(path.Base(p), ".yaml"); f.Name != want {
		return fmt.Errorf("%s: name %q, want %q (file name and group name match)", p, f.Name, want)
	}
	if !groupName.MatchString(f.Name) {
		return fmt.Errorf("%s: bad group name %q", p, f.Name)
	}
	if f.Description == "" || strings.Contains(f.Description, "\n") {
		return fmt.Errorf("%s: description must be one non-empty line", p)
	}
	if len(f.Syscalls) == 0 {
		return fmt.Errorf("%s: no syscalls", p)
	}
	seen := map[string]bool{}
	for _, s := range f.Syscalls {
		switch {
		case !syscallName.MatchString(s):
			return fmt.Errorf("%s: bad syscall name %q", p, s)
		case seen[s]:
			return fmt.Errorf("%s: %q listed twice", p, s)
		}
		if reason, ok := never[s]; ok {
			return fmt.Errorf("%s: %q can never be granted (%s)", p, s, reason)
		}
		seen[s] = true
	}
	return nil
}

// expand adds the syscalls of group name and of everything it includes to
// set. stack holds the include chain, to report cycles.
func expand(raw map[string]groupFile, name string, set map[string]bool, stack []string) error {
	if slices.Contains(stack, name) {
		return fmt.Errorf("include cycle: %s", strings.Join(append(stack, name), " -> "))
	}
	f, ok := raw[name]
	if !ok {
		return fmt.Errorf("group %s includes unknown group %s", stack[len(stack)-1], name)
	}
	for _, s := range f.Syscalls {
		set[s] = true
	}
	for _, inc := range f.Include {
		if err := expand(raw, inc, set, append(stack, name)); err != nil {
			return err
		}
	}
	return nil
}
