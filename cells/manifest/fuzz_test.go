package manifest

import (
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives the canonical round trip unchanged, and that PatchFiles, when it
// succeeds, changes nothing but the files.
//
// The seeds are whole manifests, and minimizing a new input with the default
// -fuzzminimizetime (60s) can take a short run's whole budget; add
// -fuzzminimizetime 2s for throughput.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.*")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		f.Add(readTestdata(f, filepath.Base(s)))
	}
	f.Add(withFields("limits: {memory: 1.5GiB, wall: 250ms}\nsyscalls: {groups: ['@a'], extra: [b, a]}"))
	f.Add(withFields("examples: [{input: {a: [1, 2.50, -0, 1e3, 'x']}}]"))

	other := map[string]Digest{"bin/echo": DigestOf([]byte("x")), "z": DigestOf(nil)}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		c := m.Canonical()
		m2, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(Canonical) failed: %v\ninput: %q\ncanonical: %s", err, data, c)
		}
		if c2 := m2.Canonical(); string(c2) != string(c) {
			t.Fatalf("canonical form not stable:\n%s\n%s", c, c2)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("Parse(Canonical) differs:\n%#v\n%#v", m, m2)
		}
		if m.Identity() != m2.Identity() {
			t.Fatal("identity changed")
		}

		out, err := PatchFiles(data, other)
		if err != nil {
			return
		}
		p, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(PatchFiles) failed: %v\ninput: %q\npatched: %q", err, data, out)
		}
		p.Files = m.Files
		if p.Identity() != m.Identity() {
			t.Fatalf("PatchFiles changed more than files:\n%s\n%s", m.Canonical(), p.Canonical())
		}
	})
}
