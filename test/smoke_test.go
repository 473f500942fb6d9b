package test

import (
	"strings"
	"testing"
)

// TestSmoke registers the sha256 example and calls it through tccctl.
func TestSmoke(t *testing.T) {
	e := NewEnv(t)
	e.Start()
	id := e.Register("cells/examples/sha256", nil)
	out := e.MustCtl("run", "sha256", "--input", `{"text":"abc"}`)
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; !strings.Contains(out, want) {
		t.Errorf("run sha256 = %s, want digest %s", out, want)
	}
	if out := e.MustCtl("cell", "inspect", "sha256"); !strings.Contains(out, id) {
		t.Errorf("inspect does not show identity %s:\n%s", id, out)
	}
}
