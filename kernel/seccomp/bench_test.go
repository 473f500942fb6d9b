//go:build cgo && seccomp

package seccomp

import (
	"fmt"
	"os"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/trustcells/tcc/cells/manifest"
	seccompprofiles "github.com/trustcells/tcc/seccomp-profiles"
)

var benchProfiles = []struct {
	name string
	req  manifest.Syscalls
}{
	{"base", manifest.Syscalls{}},
	{"typical", manifest.Syscalls{Groups: []string{"@basic-io", "@file-system", "@timer"}, Extra: []string{"getppid"}}},
	{"all", manifest.Syscalls{Groups: seccompprofiles.Names()}},
}

// BenchmarkCompile is the daemon's side: manifest to Profile to
// libcontainer config.
func BenchmarkCompile(b *testing.B) {
	for _, bp := range benchProfiles {
		b.Run(bp.name, func(b *testing.B) {
			for b.Loop() {
				p, err := Compile(bp.req)
				if err != nil {
					b.Fatal(err)
				}
				_ = p.Config()
			}
		})
	}
}

// BenchmarkLibseccomp is the sandbox's side, paid inside runc's init at
// every launch: libseccomp building the BPF program from the config, as
// libcontainer's InitSeccomp does (without runc's ENOSYS stub and without
// loading it). Reports the program's length in instructions.
func BenchmarkLibseccomp(b *testing.B) {
	for _, bp := range benchProfiles {
		b.Run(bp.name, func(b *testing.B) {
			p, err := Compile(bp.req)
			if err != nil {
				b.Fatal(err)
			}
			cfg := p.Config()
			f, err := os.CreateTemp(b.TempDir(), "bpf")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			for b.Loop() {
				filter, err := buildLibseccomp(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := f.Truncate(0); err != nil {
					b.Fatal(err)
				}
				if _, err := f.Seek(0, 0); err != nil {
					b.Fatal(err)
				}
				if err := filter.ExportBPF(f); err != nil {
					b.Fatal(err)
				}
				filter.Release()
			}
			st, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(st.Size()/8), "bpf-insns")
			b.ReportMetric(float64(len(p.Allowed())), "syscalls")
		})
	}
}

// buildLibseccomp mirrors libcontainer's InitSeccomp up to loading.
func buildLibseccomp(c *configs.Seccomp) (*libseccomp.ScmpFilter, error) {
	filter, err := libseccomp.NewFilter(libseccomp.ActKillProcess)
	if err != nil {
		return nil, err
	}
	if len(c.Syscalls) > 32 {
		if err := filter.SetOptimize(2); err != nil {
			return nil, err
		}
	}
	for _, s := range c.Syscalls {
		nr, err := libseccomp.GetSyscallFromName(s.Name)
		if err != nil {
			return nil, err
		}
		act := libseccomp.ActAllow
		if s.Action == configs.Errno {
			act = libseccomp.ActErrno.SetReturnCode(int16(*s.ErrnoRet))
		}
		var conds []libseccomp.ScmpCondition
		for _, a := range s.Args {
			op := libseccomp.CompareEqual
			if a.Op == configs.MaskEqualTo {
				op = libseccomp.CompareMaskedEqual
			}
			cond, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
			if err != nil {
				return nil, err
			}
			conds = append(conds, cond)
		}
		if err := filter.AddRuleConditional(nr, act, conds); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return filter, nil
}

// BenchmarkFilteredSyscall reports what a filter costs a cell per syscall:
// a static C loop of getpid with no filter, under the base profile and
// under all groups (the arch guard included, as in production). One
// iteration is one run of 1M calls; the figure is the "ns/syscall" metric
// (thread CPU time, so that a busy machine skews it less).
func BenchmarkFilteredSyscall(b *testing.B) {
	for _, bp := range append([]struct {
		name string
		req  manifest.Syscalls
	}{{"none", manifest.Syscalls{}}}, benchProfiles...) {
		b.Run(bp.name, func(b *testing.B) {
			var p *Profile
			if bp.name != "none" {
				var err error
				if p, err = Compile(bp.req); err != nil {
					b.Fatal(err)
				}
			}
			var sum float64
			for b.Loop() {
				o := run(b, runOpts{profile: p, guard: p != nil}, "probe", "loop", "1000000")
				var ns float64
				if _, err := fmt.Sscanf(o.stdout, "ns=%g", &ns); err != nil || o.exitCode != 0 {
					b.Fatalf("probe loop: %v", o)
				}
				sum += ns
			}
			b.ReportMetric(sum/float64(b.N), "ns/syscall")
		})
	}
}
