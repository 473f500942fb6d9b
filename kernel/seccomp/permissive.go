//go:build cgo && seccomp

package seccomp

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	libseccomp "github.com/seccomp/libseccomp-golang"

	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

// Permissive is the profile `tccctl cell advise` runs an unregistered
// capsule under, to see which syscalls it makes: every x86_64 syscall a
// contract could be granted, with the argument narrowing a granted syscall
// gets (clone without namespace flags, socket families). Never granted:
// what never.yaml forbids (a forbidden syscall kills the cell, as it would
// under any contract) and the probe syscalls of rules.go (rseq,
// copy_file_range, readlink, readlinkat, ioctl, prctl), which get the same
// errno answers as under a contract that does not grant them, so that the
// runtime behaves as it will in production and advice does not suggest
// what it only probed for. grant adds syscalls to allow outright, e.g.
// "ioctl" after an advice run was killed on an ioctl that is not a probe.
func Permissive(grant ...string) (*Profile, error) {
	if err := checkArch(); err != nil {
		return nil, err
	}
	probed := map[string]bool{}
	for _, r := range probes {
		probed[r.Syscall] = true
	}
	granted := map[string]bool{}
	for i, name := range grant {
		if !known(name) {
			return nil, &RequestError{Field: fmt.Sprintf("grant[%d]", i), Err: fmt.Errorf("%w %q on x86_64", ErrUnknownSyscall, name)}
		}
		if reason, ok := seccompprofiles.Forbidden(name); ok {
			return nil, &RequestError{Field: fmt.Sprintf("grant[%d]", i), Err: fmt.Errorf("%q %w: %s", name, ErrForbidden, reason)}
		}
		granted[name] = true
	}
	for _, name := range grantable() {
		if !probed[name] {
			granted[name] = true
		}
	}
	p := &Profile{allowed: slices.Sorted(maps.Keys(granted))}
	for _, sc := range p.allowed {
		p.rules = append(p.rules, allowRules(sc, true)...)
	}
	p.addProbes(granted)
	return p, nil
}

// grantable lists every x86_64 syscall libseccomp knows that never.yaml
// does not forbid.
func grantable() []string {
	var out []string
	// x86_64 numbers are dense from 0; 512 and up are x32's.
	for nr := 0; nr < 512; nr++ {
		name, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64)
		if err != nil || name == "" || !known(name) {
			continue
		}
		if _, forbidden := seccompprofiles.Forbidden(name); forbidden {
			continue
		}
		out = append(out, name)
	}
	return out
}

// AdviceRule says how Advise chooses, for people reading its answer.
const AdviceRule = "fewest lines: each chosen group or extra syscall costs 1, and each syscall a chosen group grants that the cell did not use (and the base does not already grant) costs 1/2; " +
	"so a group is chosen only when it replaces more extra syscalls than 1 plus half of what it would grant unused. Ties go to granting less."

// Advice is the smallest syscalls block of a manifest that allows what a
// cell was seen doing.
type Advice struct {
	Groups []string `json:"groups"` // chosen groups, sorted
	Extra  []string `json:"extra"`  // used syscalls no chosen group grants, sorted
	// Covers lists, for each chosen group, the used syscalls it grants.
	Covers map[string][]string `json:"covers,omitempty"`
	// Unused are the syscalls the chosen groups grant that the cell did not
	// use and the base does not grant anyway, sorted.
	Unused []string `json:"unused,omitempty"`
	// Base are used syscalls every cell is granted; they need no line.
	Base []string `json:"base,omitempty"`
	// Forbidden are used syscalls no contract may grant, with the reason:
	// the cell cannot be registered while it makes them.
	Forbidden map[string]string `json:"forbidden,omitempty"`
	// Unknown are names libseccomp does not know on x86_64 (too new for
	// it, or a number outside the table): they cannot be granted.
	Unknown []string `json:"unknown,omitempty"`
}

// maxCoverGroups bounds the exhaustive search (2^n subsets); the shipped
// groups are far fewer.
const maxCoverGroups = 16

// Advise chooses groups and extra syscalls that grant every syscall in
// used, by the rule in AdviceRule, searching every subset of the groups
// that grant at least one needed syscall.
func Advise(used []string) *Advice {
	a := &Advice{Groups: []string{}, Extra: []string{}}
	base := map[string]bool{}
	for _, sc := range seccompprofiles.Base().Syscalls {
		base[sc] = true
	}
	isUsed := map[string]bool{}
	var need []string
	for _, sc := range slices.Compact(slices.Sorted(slices.Values(used))) {
		isUsed[sc] = true
		switch reason, forbidden := seccompprofiles.Forbidden(sc); {
		case base[sc]:
			a.Base = append(a.Base, sc)
		case forbidden:
			if a.Forbidden == nil {
				a.Forbidden = map[string]string{}
			}
			a.Forbidden[sc] = reason
		case !known(sc):
			a.Unknown = append(a.Unknown, sc)
		default:
			need = append(need, sc)
		}
	}
	if len(need) == 0 {
		return a
	}

	var cands []seccompprofiles.Group
	for _, g := range seccompprofiles.Groups() {
		for _, sc := range need {
			if slices.Contains(g.Syscalls, sc) {
				cands = append(cands, g)
				break
			}
		}
	}
	if len(cands) > maxCoverGroups {
		cands = cands[:maxCoverGroups] // not reached with the shipped data; extras cover the rest
	}

	type choice struct {
		groups []string
		extra  []string
		unused []string
		cost   float64
	}
	best := choice{cost: math.Inf(1)}
	for mask := 0; mask < 1<<len(cands); mask++ {
		granted := map[string]bool{}
		var c choice
		for i, g := range cands {
			if mask&(1<<i) == 0 {
				continue
			}
			c.groups = append(c.groups, g.Name)
			for _, sc := range g.Syscalls {
				granted[sc] = true
			}
		}
		for _, sc := range need {
			if !granted[sc] {
				c.extra = append(c.extra, sc)
			}
		}
		for sc := range granted {
			if !isUsed[sc] && !base[sc] {
				c.unused = append(c.unused, sc)
			}
		}
		c.cost = float64(len(c.groups)+len(c.extra)) + float64(len(c.unused))/2
		if c.cost < best.cost || c.cost == best.cost && (len(c.unused) < len(best.unused) ||
			len(c.unused) == len(best.unused) && strings.Join(c.groups, ",") < strings.Join(best.groups, ",")) {
			best = c
		}
	}
	a.Groups = append(a.Groups, best.groups...)
	a.Extra = append(a.Extra, best.extra...)
	slices.Sort(best.unused)
	a.Unused = best.unused
	for _, name := range a.Groups {
		g, _ := seccompprofiles.Lookup(name)
		for _, sc := range need {
			if slices.Contains(g.Syscalls, sc) {
				if a.Covers == nil {
					a.Covers = map[string][]string{}
				}
				a.Covers[name] = append(a.Covers[name], sc)
			}
		}
	}
	return a
}
