package manifest

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocExample keeps the example at the top of docs/MANIFEST.md valid.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/MANIFEST.md")
	if err != nil {
		t.Skipf("docs/MANIFEST.md: %v", err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal("no yaml block in docs/MANIFEST.md")
	}
	// The example abbreviates digests as "sha256:…"; drop those lines.
	var lines []string
	for _, l := range strings.SplitAfter(string(block[1]), "\n") {
		if !strings.Contains(l, "sha256:…") {
			lines = append(lines, l)
		}
	}
	m := mustParse(t, []byte(strings.Join(lines, "")))
	if m.Name != "sha256" || len(m.Examples) != 3 || m.Limits.Memory != 32*MiB {
		t.Errorf("unexpected example manifest: %s", m.Canonical())
	}

	// The doc says fields commented "# default" can be left out with the
	// same identity: drop them (and the blocks they open) and compare.
	var short []string
	dropIndent := -1
	for _, l := range lines {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		if dropIndent >= 0 && indent > dropIndent {
			continue
		}
		dropIndent = -1
		if strings.Contains(l, "# default") {
			if key, _, _ := strings.Cut(l, "#"); strings.HasSuffix(strings.TrimSpace(key), ":") {
				dropIndent = indent
			}
			continue
		}
		short = append(short, l)
	}
	if got := mustParse(t, []byte(strings.Join(short, ""))); got.Identity() != m.Identity() {
		t.Errorf("without the default lines the identity changed:\n%s\n%s", got.Canonical(), m.Canonical())
	}
}
