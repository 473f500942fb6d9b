package ebpf

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/trustcells/tcc/internal/testutil"
)

func TestLoad(t *testing.T) {
	testutil.RequireRoot(t)
	tr, err := Load(Config{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestVerifierCost(t *testing.T) {
	testutil.RequireRoot(t)
	tr, err := Load(Config{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer tr.Close()
	for name, p := range map[string]interface {
		Info() (*ebpf.ProgramInfo, error)
	}{
		"sys_enter": tr.objs.TccSysEnter, "fork": tr.objs.TccFork, "exec": tr.objs.TccExec, "exit": tr.objs.TccExit,
	} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := info.VerifiedInstructions()
		size, _ := info.JitedSize()
		t.Logf("%s: %d instructions verified, %d bytes JITed", name, n, size)
	}
}
