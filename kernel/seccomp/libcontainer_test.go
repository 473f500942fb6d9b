//go:build cgo && seccomp

package seccomp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices" // device rules below
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/internal/testutil"
)

// TestLibcontainer runs programs in real libcontainer containers under
// compiled profiles: the production path, where runc's init loads the filter
// and then still has to reach the cell (@tcc-launch). The test binary's
// "init" hook installs the arch guard first, as the daemon's does.
func TestLibcontainer(t *testing.T) {
	testutil.RequireRoot(t)
	base := mustCompile(t, manifest.Syscalls{})
	input := []byte(`{"cell":"tcc","n":[1,2,3]}` + "\n")
	tests := []struct {
		name string
		argv []string
		env  []string
		park time.Duration // between Start (runc's init waits on the exec fifo) and Exec
		want string        // stdout; "SIGSYS": killed by the filter
	}{
		{"glibc", []string{"cstdio-glibc"}, nil, 0, string(input)},
		{"musl", []string{"cstdio-musl"}, nil, 0, string(input)},
		{"go", []string{"gojson"}, []string{"GOMAXPROCS=2"}, 0, gojsonOutput(t, input)},
		{"go after a parked start", []string{"gojson"}, []string{"GOMAXPROCS=2"}, 300 * time.Millisecond, gojsonOutput(t, input)},
		{"outside the contract", []string{"probe", "sys", fmt.Sprint(unix.SYS_GETPPID)}, nil, 0, "SIGSYS"},
		{"x32 in a thread", []string{"probe", "thread-x32"}, nil, 0, "SIGSYS"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, ws := runContainer(t, fmt.Sprintf("tcc-seccomp-test-%d-%d", os.Getpid(), i), base, tt.park, input, tt.env, tt.argv...)
			if tt.want == "SIGSYS" {
				if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
					t.Fatalf("%v: status %v (stdout %q), want killed by SIGSYS", tt.argv, ws, stdout)
				}
				return
			}
			if ws.ExitStatus() != 0 || stdout != tt.want {
				t.Fatalf("%v: status %v, stdout %q; want exit 0, %q", tt.argv, ws, stdout, tt.want)
			}
		})
	}
}

// runContainer runs progDir/argv[0] as /cell in a fresh container (all
// namespaces but user, read-only root holding only the program, uid 65534,
// no capabilities, no_new_privs) and destroys it.
func runContainer(t *testing.T, id string, p *Profile, park time.Duration, stdin []byte, env []string, argv ...string) (string, syscall.WaitStatus) {
	t.Helper()
	bin := prog(t, argv[0])
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{rootfs, filepath.Join(rootfs, "dev"), filepath.Join(rootfs, "proc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "cell"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	null := devices.Rule{Type: devices.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true}
	cfg := &configs.Config{
		Rootfs:          rootfs,
		Readonlyfs:      true,
		NoNewPrivileges: true,
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWIPC},
			{Type: configs.NEWUTS}, {Type: configs.NEWNET}, {Type: configs.NEWCGROUP},
		},
		Cgroups: &cgroups.Cgroup{
			Path:      "/" + id,
			Resources: &cgroups.Resources{Devices: []*devices.Rule{&null}},
		},
		// runc's init reads /proc/sys/kernel/cap_last_cap inside the
		// container and reopens /dev/null for stdio.
		Mounts: []*configs.Mount{
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "mode=755,size=64k"},
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
		},
		Devices:      []*devices.Device{{Rule: null, Path: "/dev/null", FileMode: 0o666}},
		Capabilities: &configs.Capabilities{},
		Seccomp:      p.Config(),
		Rlimits:      []configs.Rlimit{{Type: unix.RLIMIT_CORE}},
	}
	c, err := libcontainer.Create(filepath.Join(dir, "state"), id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
		for _, m := range []string{"/sys/fs/cgroup/*/" + id, "/sys/fs/cgroup/" + id} {
			if left, _ := filepath.Glob(m); len(left) > 0 {
				t.Errorf("cgroups left behind: %v", left)
			}
		}
	})
	var stdout, stderr bytes.Buffer
	proc := &libcontainer.Process{
		Args:   append([]string{"/cell"}, argv[1:]...),
		Env:    env,
		UID:    65534,
		GID:    65534,
		Init:   true,
		Stdin:  bytes.NewReader(stdin),
		Stdout: &stdout,
		Stderr: &stderr,
	}
	if err := c.Start(proc); err != nil {
		t.Fatalf("start: %v", err)
	}
	time.Sleep(park)
	if err := c.Exec(); err != nil {
		t.Fatalf("exec: %v (stderr %q)", err, stderr.String())
	}
	st, err := proc.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("wait: %v", err)
	}
	if st == nil {
		t.Fatalf("wait: no status (err %v)", err)
	}
	return stdout.String(), st.Sys().(syscall.WaitStatus)
}
