package capsule

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIgnoreFileKeepsSourcesOutOfTheCapsule(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("cell.yaml", "version: tcc/v1\nname: x\ndescription: x\nentrypoint: x\n", 0o644)
	write("x", "\x7fELF", 0o755)
	write("data/rules.json", "{}", 0o644)
	write("main.go", "package main", 0o644)
	write("sub/helper_test.go", "package main", 0o644)
	write("testdata/big.bin", "junk", 0o644)
	write("README.md", "# x", 0o644)
	// A symlink inside an ignored directory is never looked at.
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "testdata", "link")); err != nil {
		t.Fatal(err)
	}
	write(IgnoreFile, "# sources\n*.go\n/README.md\ntestdata/\n", 0o644)

	p, err := Pack(dir)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	var got []string
	for f := range p.Manifest.Files {
		got = append(got, f)
	}
	slices.Sort(got)
	if want := []string{"data/rules.json", "x"}; !slices.Equal(got, want) {
		t.Errorf("packed files = %v, want %v", got, want)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.checkContents(); err != nil {
		t.Errorf("packed directory does not check: %v", err)
	}
}

func TestIgnoreFileBadPattern(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cell.yaml"), []byte("version: tcc/v1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, IgnoreFile), []byte("ok\n[oops\n"), 0o644)
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Open = %v, want an error naming line 2 of %s", err, IgnoreFile)
	}
}
