package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// hierarchies lists the mount points of every cgroup hierarchy on the host
// (v1 controllers, named v1 hierarchies such as name=systemd, and cgroup2).
// Only mounts of a hierarchy's root are listed: that is where libcontainer's
// fs managers put absolute cgroup paths.
func hierarchies() ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	seen := map[string]bool{}
	var dirs []string
	for _, m := range mounts {
		if m.Root != "/" || seen[m.Mountpoint] {
			continue
		}
		seen[m.Mountpoint] = true
		dirs = append(dirs, m.Mountpoint)
	}
	return dirs, nil
}

// cgroup2Mount returns the mount point of the cgroup2 hierarchy: the cgroup
// root on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one, "" when
// the host has none.
func cgroup2Mount() (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	for _, m := range mounts {
		if m.Root == "/" {
			return m.Mountpoint, nil
		}
	}
	return "", nil
}

// cgroupID returns the id of a cgroup2 directory: its inode number, which is
// what bpf_get_current_cgroup_id() reports for tasks in it.
func cgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return st.Ino, nil
}

// cgroup2PathOf returns the cgroup2 path of a process ("0::" line of
// /proc/PID/cgroup), relative to the cgroup2 root.
func cgroup2PathOf(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("pid %d has no cgroup2 entry", pid)
}

// joinCgroup2 makes sure the process pid is in the cgroup2 directory dir
// (rel is dir relative to the cgroup2 root). libcontainer's v1 manager
// tries to join the unified hierarchy of a hybrid host but ignores errors;
// the cell's BPF identity depends on it, so check and, if needed, do it.
func joinCgroup2(dir, rel string, pid int) error {
	if got, err := cgroup2PathOf(pid); err == nil && got == rel {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
		return err
	}
	got, err := cgroup2PathOf(pid)
	if err != nil {
		return err
	}
	if got != rel {
		return fmt.Errorf("pid %d is in cgroup2 %q, not %q", pid, got, rel)
	}
	return nil
}

// killCgroup SIGKILLs every process of a sandbox's cgroup. cgroup.kill
// (cgroup2, Linux 5.14) does it atomically, forks in flight included;
// without it, the processes listed in the v1 directory are killed until
// none is listed.
func killCgroup(v2dir, v1dir string) error {
	if v2dir != "" {
		err := cgroups.WriteFile(v2dir, "cgroup.kill", "1")
		switch {
		case err == nil:
			return nil
		case !cgroups.PathExists(v2dir):
			// Gone, or never made: the v1 directory decides.
		case errors.Is(err, os.ErrNotExist):
			// No cgroup.kill: a kernel older than 5.14.
		default:
			return fmt.Errorf("write cgroup.kill: %w", err)
		}
	}
	if v1dir == "" {
		return nil
	}
	for range 100 {
		pids, err := cgroups.GetAllPids(v1dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("processes remain in %s", v1dir)
}

// pidsOf lists the processes of a cgroup directory and its descendants.
func pidsOf(dir string) []int {
	pids, _ := cgroups.GetAllPids(dir)
	return pids
}

// removeCgroup removes a cgroup directory and its descendants, retrying
// while the kernel finishes tearing down the last tasks.
func removeCgroup(dir string) error {
	err := cgroups.RemovePath(dir)
	if err != nil && !cgroups.PathExists(dir) {
		return nil
	}
	return err
}

// readUint reads a file holding one unsigned number ("max" reads as 0).
func readUint(dir, file string) (uint64, error) {
	s, err := cgroups.ReadFile(dir, file)
	if err != nil {
		return 0, err
	}
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKey reads the value of key from a flat-keyed file ("key value" lines)
// such as memory.events, pids.events or memory.oom_control. A missing key
// reads as 0.
func readKey(dir, file, key string) (uint64, error) {
	s, err := cgroups.ReadFile(dir, file)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewBufferString(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

// cgroupDirsUnder lists, in every hierarchy, the directories directly under
// parent (an absolute cgroup path such as "/tcc").
func cgroupDirsUnder(parent string) (map[string][]string, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, h := range hs {
		ents, err := os.ReadDir(filepath.Join(h, parent))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				out[e.Name()] = append(out[e.Name()], filepath.Join(h, parent, e.Name()))
			}
		}
	}
	return out, nil
}
