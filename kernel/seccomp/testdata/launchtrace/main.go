// Command launchtrace measures @tcc-launch: the syscalls runc's init makes on
// the thread that loaded a container's seccomp filter, between loading it and
// exec'ing the cell. Re-run it after every runc upgrade:
//
//	go build -tags seccomp -o /tmp/launchtrace ./kernel/seccomp/testdata/launchtrace
//	sudo /tmp/launchtrace [-park 2s] /path/to/static/binary
//
// It runs the binary in a container whose filter only logs (so nothing is
// killed), traces itself with strace -f, and prints the syscalls of the
// filtered thread. Needs root and strace.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

const envTraced = "TCC_LAUNCHTRACE_TRACED"

func main() {
	park := flag.Duration("park", 0, "wait between Start (init parked on the exec fifo) and Exec")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: launchtrace [-park D] /path/to/static/binary")
		os.Exit(2)
	}
	if os.Getenv(envTraced) == "" {
		os.Exit(trace())
	}
	if err := runOnce(flag.Arg(0), *park); err != nil {
		fmt.Fprintln(os.Stderr, "launchtrace:", err)
		os.Exit(1)
	}
}

// trace re-runs this program under strace and prints what the filtered
// thread did.
func trace() int {
	out, err := os.CreateTemp("", "tcc-launchtrace-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out.Close()
	defer os.Remove(out.Name())
	self, _ := os.Executable()
	cmd := exec.Command("strace", append([]string{"-f", "-qq", "-o", out.Name(), self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), envTraced+"=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "strace:", err)
		return 1
	}
	f, err := os.Open(out.Name())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	call := regexp.MustCompile(`^(\d+)\s+([a-z0-9_]+)\(`)
	var tid string
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := call.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch {
		case tid == "" && (m[2] == "seccomp" && strings.Contains(sc.Text(), "SECCOMP_SET_MODE_FILTER, 0, {") ||
			m[2] == "prctl" && strings.Contains(sc.Text(), "PR_SET_SECCOMP")):
			tid = m[1]
		case tid != "" && m[1] == tid:
			counts[m[2]]++
			if m[2] == "execve" {
				names := make([]string, 0, len(counts))
				for n := range counts {
					names = append(names, n)
				}
				slices.Sort(names)
				for _, n := range names {
					fmt.Printf("%s(%d) ", n, counts[n])
				}
				fmt.Println()
				return 0
			}
		}
	}
	fmt.Fprintln(os.Stderr, "launchtrace: no filter load followed by execve in the trace")
	return 1
}

func runOnce(bin string, park time.Duration) error {
	dir, err := os.MkdirTemp("", "tcc-launchtrace-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(rootfs, 0o755)
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "cell"), data, 0o755); err != nil {
		return err
	}
	null := devices.Rule{Type: devices.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true}
	id := fmt.Sprintf("tcc-launchtrace-%d", os.Getpid())
	cfg := &configs.Config{
		Rootfs:          rootfs,
		Readonlyfs:      true,
		NoNewPrivileges: true,
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWIPC},
			{Type: configs.NEWUTS}, {Type: configs.NEWNET}, {Type: configs.NEWCGROUP},
		},
		Cgroups: &cgroups.Cgroup{Path: "/" + id, Resources: &cgroups.Resources{Devices: []*devices.Rule{&null}}},
		Mounts: []*configs.Mount{
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "mode=755,size=64k"},
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
		},
		Devices:      []*devices.Device{{Rule: null, Path: "/dev/null", FileMode: 0o666}},
		Capabilities: &configs.Capabilities{},
		// Log everything, kill nothing: the trace shows what would be needed.
		Seccomp: &configs.Seccomp{
			DefaultAction: configs.Log,
			Syscalls:      []*configs.Syscall{{Name: "getppid", Action: configs.Allow}},
		},
	}
	c, err := libcontainer.Create(filepath.Join(dir, "state"), id, cfg)
	if err != nil {
		return err
	}
	defer c.Destroy()
	var stdout, stderr bytes.Buffer
	p := &libcontainer.Process{
		Args: []string{"/cell"}, UID: 65534, GID: 65534, Init: true,
		Stdin: strings.NewReader("{}\n"), Stdout: &stdout, Stderr: &stderr,
	}
	if err := c.Start(p); err != nil {
		return err
	}
	time.Sleep(park)
	if err := c.Exec(); err != nil {
		return err
	}
	if _, err := p.Wait(); err != nil {
		return fmt.Errorf("cell: %v (stderr %q)", err, stderr.String())
	}
	return nil
}
