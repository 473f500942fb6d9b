package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// ManifestFile and SignatureFile are the reserved names at the root of
	// a capsule.
	ManifestFile  = "cell.yaml"
	SignatureFile = "cell.sig"

	maxPathLen = 1024
)

var (
	nameRE        = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	exampleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	groupRE       = regexp.MustCompile(`^@[a-z0-9-]{1,63}$`)
	syscallRE     = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// DefaultLimits are the limits of a manifest that sets none.
func DefaultLimits() Limits {
	return Limits{
		Memory:    64 * MiB,
		Pids:      16,
		CPU:       1.0,
		Wall:      Duration(10e9),
		Input:     1 * MiB,
		Output:    1 * MiB,
		Stderr:    64 * KiB,
		Tmp:       16 * MiB,
		OpenFiles: 64,
	}
}

// emptyObjectSchema is the default input and output schema: any object.
const emptyObjectSchema = `{"type":"object"}`

// defaults is the manifest of tcc/v1 before any field is read. Annotations
// and example names are derived after decoding, in finish.
func defaults() *Manifest {
	return &Manifest{
		Args:           []string{},
		Input:          Schema(emptyObjectSchema),
		Output:         Schema(emptyObjectSchema),
		Phase:          PhaseAnalyze,
		Limits:         DefaultLimits(),
		Syscalls:       Syscalls{Groups: []string{}, Extra: []string{}},
		Filesystem:     Filesystem{Devices: []Device{}},
		Network:        NetworkNone,
		Nondeterminism: []Nondeterminism{},
		Monitor:        Monitor{Policy: PolicyLog, Threshold: 1.0},
		Examples:       []Example{},
		Files:          map[string]Digest{},
	}
}

// finish derives the remaining defaults, normalizes lists and checks every
// rule that is not a matter of type.
func (d *decoder) finish(m *Manifest) {
	d.required("version")
	if d.set("version") && m.Version != Version {
		d.failAt("version", "%q is not supported (this tcc reads %q)", truncate(m.Version, 40), Version)
	}
	if d.required("name") && !nameRE.MatchString(m.Name) {
		d.failAt("name", "%q is not a valid cell name (lower-case letter, then up to 63 of a-z 0-9 _ -)", truncate(m.Name, 80))
	}
	if d.required("description") && strings.TrimSpace(m.Description) == "" {
		d.failAt("description", "must not be empty; say what the cell does, for the MCP host")
	}
	if d.required("entrypoint") {
		if err := ValidPath(m.Entrypoint); err != nil {
			d.failAt("entrypoint", "%v", err)
		}
	}
	for i, a := range m.Args {
		if strings.ContainsRune(a, 0) {
			d.failAt("args["+strconv.Itoa(i)+"]", "contains a NUL byte")
		}
	}

	in := d.schema("input", m.Input)
	out := d.schema("output", m.Output)

	switch m.Phase {
	case PhaseObserve, PhaseAnalyze, PhaseActuate:
	default:
		d.failAt("phase", "%q is not a phase (observe, analyze or actuate)", truncate(string(m.Phase), 40))
	}
	d.annotations(m)
	d.limits(&m.Limits)

	m.Syscalls.Groups = checkList(d, "syscalls.groups", m.Syscalls.Groups, func(s string) string {
		if !groupRE.MatchString(s) {
			return fmt.Sprintf("%q is not a syscall group name (\"@\" then a-z 0-9 -, e.g. @basic-io; tccctl cell syscalls lists them)", truncate(s, 40))
		}
		return ""
	})
	m.Syscalls.Extra = checkList(d, "syscalls.extra", m.Syscalls.Extra, func(s string) string {
		if !syscallRE.MatchString(s) {
			return fmt.Sprintf("%q is not a syscall name (a-z 0-9 _, e.g. getrandom)", truncate(s, 40))
		}
		return ""
	})
	m.Filesystem.Devices = checkList(d, "filesystem.devices", m.Filesystem.Devices, func(s Device) string {
		switch s {
		case DeviceNull, DeviceZero, DeviceURandom:
			return ""
		}
		return fmt.Sprintf("%q is not an available device (null, zero or urandom)", truncate(string(s), 40))
	})

	if m.Network != NetworkNone {
		d.failAt("network", "%q is not supported in tcc/v1 (only \"none\"); network grants come later", truncate(string(m.Network), 40))
	}
	m.Nondeterminism = checkList(d, "nondeterminism", m.Nondeterminism, func(s Nondeterminism) string {
		switch s {
		case NondetRandom, NondetTime:
			return ""
		case NondetNetwork:
			if m.Network == NetworkNone {
				return `"network" needs a network grant, and network is "none"`
			}
			return ""
		}
		return fmt.Sprintf("%q is not a source of nondeterminism (random, time or network)", truncate(string(s), 40))
	})

	d.monitor(&m.Monitor)
	d.examples(m, in, out)

	if m.Parent != "" && !isDigest(string(m.Parent)) {
		d.failAt("parent", "%q is not an identity (want \"sha256:\" and 64 lower-case hex digits)", truncate(string(m.Parent), 80))
	}
	d.files(m.Files)
}

// required reports whether the field was given; if not it records why.
func (d *decoder) required(field string) bool {
	switch {
	case d.set(field):
		return true
	case d.keys[field] != nil:
		d.failAt(field, "must not be empty (it is required)")
	default:
		d.fail(nil, field, "required field is missing")
	}
	return false
}

// ValidPath checks a capsule path as cell.yaml names it (entrypoint, files):
// relative, clean, inside the capsule, not cell.yaml or cell.sig.
func ValidPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case len(p) > maxPathLen:
		return fmt.Errorf("path is longer than %d bytes", maxPathLen)
	case !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("path %q contains a control character or invalid UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute; write it relative to the capsule", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("path %q contains \"..\"; every file must be inside the capsule", p)
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("path %q is not clean; write %q", p, path.Clean(p))
	case p == ManifestFile || p == SignatureFile:
		return fmt.Errorf("path %q is reserved for the capsule's manifest and signature", p)
	}
	return nil
}

func (d *decoder) annotations(m *Manifest) {
	a := &m.Annotations
	sideEffects := m.Phase == PhaseActuate
	if !d.set("annotations.readOnly") {
		a.ReadOnly = !sideEffects
	}
	if !d.set("annotations.destructive") {
		a.Destructive = sideEffects && !a.ReadOnly
	}
	if !d.set("annotations.idempotent") {
		a.Idempotent = !sideEffects
	}
	if !d.set("annotations.openWorld") {
		a.OpenWorld = m.Network != NetworkNone
	}
	if !sideEffects {
		if !a.ReadOnly {
			d.failAt("annotations.readOnly", "must be true for phase %q: observe and analyze cells have no side effects (use phase actuate)", m.Phase)
		}
		if a.Destructive {
			d.failAt("annotations.destructive", "must be false for phase %q: observe and analyze cells have no side effects (use phase actuate)", m.Phase)
		}
	} else if a.ReadOnly && a.Destructive {
		d.failAt("annotations.destructive", "a read-only cell cannot be destructive")
	}
}

func (d *decoder) limits(l *Limits) {
	sizes := []struct {
		field    string
		v        Size
		min, max Size
	}{
		{"memory", l.Memory, 4 * MiB, 8 * GiB},
		{"input", l.Input, 1 * KiB, 256 * MiB},
		{"output", l.Output, 1 * KiB, 256 * MiB},
		{"stderr", l.Stderr, 0, 16 * MiB},
		{"tmp", l.Tmp, 4 * KiB, 4 * GiB},
	}
	for _, s := range sizes {
		d.inRange("limits."+s.field, s.v < s.min, s.v > s.max, s.v, s.min, s.max)
	}
	d.inRange("limits.pids", l.Pids < 1, l.Pids > 4096, l.Pids, 1, 4096)
	d.inRange("limits.openFiles", l.OpenFiles < 8, l.OpenFiles > 65536, l.OpenFiles, 8, 65536)
	// Written so that NaN fails both tests' complement.
	d.inRange("limits.cpu", !(l.CPU >= 0.01), !(l.CPU <= 64), l.CPU, Cores(0.01), Cores(64))
	minWall, maxWall := Duration(10e6), Duration(3600e9)
	if l.Wall <= 0 {
		d.failAt("limits.wall", "%s is not positive", l.Wall)
	} else {
		d.inRange("limits.wall", l.Wall < minWall, l.Wall > maxWall, l.Wall, minWall, maxWall)
	}
}

func (d *decoder) inRange(field string, below, above bool, v, min, max any) {
	switch {
	case below:
		d.failAt(field, "%v is below the minimum %v", v, min)
	case above:
		d.failAt(field, "%v is above the maximum %v", v, max)
	}
}

// names checks each element of a list, then sorts it and drops duplicates.
func checkList[T ~string](d *decoder, field string, list []T, check func(T) string) []T {
	for i, s := range list {
		if msg := check(s); msg != "" {
			d.failAt(field+"["+strconv.Itoa(i)+"]", "%s", msg)
		}
	}
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

func (d *decoder) monitor(mon *Monitor) {
	switch mon.Policy {
	case PolicyLog, PolicyThrottle, PolicyHalt:
	default:
		d.failAt("monitor.policy", "%q is not a policy (log, throttle or halt)", truncate(string(mon.Policy), 40))
	}
	if b := mon.Entropy; b != nil {
		if !d.set("monitor.entropy.max") {
			b.Max = 8
		}
		ok := true
		for _, f := range []struct {
			field string
			v     float64
		}{{"min", b.Min}, {"max", b.Max}} {
			if !(f.v >= 0 && f.v <= 8) {
				d.failAt("monitor.entropy."+f.field, "%v is outside 0..8 (bits per byte)", f.v)
				ok = false
			}
		}
		if ok && b.Min > b.Max {
			d.failAt("monitor.entropy", "min %v is above max %v", b.Min, b.Max)
		}
	}
	if !(mon.Threshold > 0) {
		d.failAt("monitor.threshold", "%v must be greater than 0", mon.Threshold)
	}
}

func (d *decoder) examples(m *Manifest, in, out *compiled) {
	names := map[string]int{}
	for i := range m.Examples {
		ex := &m.Examples[i]
		p := "examples[" + strconv.Itoa(i) + "]"
		if !d.set(p + ".name") {
			ex.Name = "example-" + strconv.Itoa(i+1)
		} else if !exampleNameRE.MatchString(ex.Name) {
			d.failAt(p+".name", "%q is not a valid example name (letter or digit, then up to 63 of A-Z a-z 0-9 _ . -)", truncate(ex.Name, 80))
		}
		if j, dup := names[ex.Name]; dup {
			d.failAt(p+".name", "%q is also the name of examples[%d]", ex.Name, j)
		} else {
			names[ex.Name] = i
		}
		if string(ex.Output) == "null" {
			ex.Output = nil
		}
		if d.keys[p+".input"] == nil {
			d.fail(d.values[p], p+".input", "required field is missing")
		} else if in != nil && ex.Input != nil {
			if err := in.validate(ex.Input); err != nil {
				d.failAt(p+".input", "does not match the input schema: %v", err)
			}
		}
		if out != nil && ex.Output != nil {
			if err := out.validate(ex.Output); err != nil {
				d.failAt(p+".output", "does not match the output schema: %v", err)
			}
		}
	}
}

func (d *decoder) files(files map[string]Digest) {
	for _, p := range slices.Sorted(maps.Keys(files)) {
		fp := joinKey("files", p)
		if err := ValidPath(p); err != nil {
			d.failAt(fp, "%v", err)
			continue
		}
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := files[dir]; ok {
				d.failAt(fp, "%q is listed as a file, so it cannot also be a directory", dir)
				break
			}
		}
		if !isDigest(string(files[p])) {
			d.failAt(fp, "%q is not a digest (want \"sha256:\" and 64 lower-case hex digits; tccctl cell pack writes them)", truncate(string(files[p]), 80))
		}
	}
}

// CheckFiles checks what a capsule needs beyond a valid manifest: that
// files lists the entrypoint. Parse allows an empty files map because
// `tccctl cell pack` fills it in.
func (m *Manifest) CheckFiles() error {
	if _, ok := m.Files[m.Entrypoint]; !ok {
		if len(m.Files) == 0 {
			return &FieldError{Path: "files", Msg: "is empty; run tccctl cell pack to list the capsule's files"}
		}
		return &FieldError{Path: "files", Msg: fmt.Sprintf("does not list the entrypoint %q; build it and run tccctl cell pack", m.Entrypoint)}
	}
	return nil
}

// unmarshalValue decodes canonical JSON for a validator.
func unmarshalValue(b []byte) (any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		var re *json.UnmarshalTypeError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("number %s is out of range", re.Value)
		}
		return nil, err
	}
	return v, nil
}
