package manifest

import "testing"

func BenchmarkParse(b *testing.B) {
	src := readTestdata(b, "sha256.yaml")
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	m := mustParse(b, readTestdata(b, "sha256.yaml"))
	for b.Loop() {
		m.Identity()
	}
}
