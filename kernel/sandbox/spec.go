package sandbox

import (
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Spec describes one call's sandbox. Everything in it is fixed at Prepare:
// runc init receives the cell's arguments, environment and standard streams
// when it starts.
type Spec struct {
	// ID names the sandbox; unique among live sandboxes, 1 to 64 of
	// [A-Za-z0-9_.-]. It names the cgroup, the state and rootfs dirs.
	ID string

	// Files are bind-mounted read-only, nosuid and nodev under /cell;
	// all but the Exec ones are also noexec. Each is the very file the
	// caller opened (and hashed), whatever its host path names by then.
	Files []File
	// Entrypoint is the Path of the file to run (one of Files, Exec).
	Entrypoint string
	// Args are the arguments after argv[0] ("/cell/<Entrypoint>").
	Args []string
	// Env is the whole environment ("KEY=value"); nothing is inherited.
	Env []string

	Memory    int64   // bytes of memory, swap excluded (no swap); > 0
	Pids      int64   // tasks (processes and threads) in the cgroup; > 0
	CPU       float64 // cores of CPU time per wall second; 0 = no quota
	OpenFiles uint64  // RLIMIT_NOFILE; 0 = 64
	// Tmp is the size in bytes of a tmpfs at /tmp, the only writable place
	// (nosuid, nodev, noexec; RLIMIT_FSIZE is Tmp). 0 = no /tmp, and
	// RLIMIT_FSIZE is 0: standard streams must not be regular files.
	Tmp int64
	// Proc mounts at /proc the procfs of the cell's own pid namespace,
	// showing processes only (subset=pid).
	Proc bool
	// Devices lists the nodes to bind from the host into /dev: a subset
	// of "null", "zero", "urandom". /dev exists only if it is not empty.
	Devices []string

	// Seccomp is the cell's filter (from kernel/seccomp); required. It is
	// applied by runc init just before it waits for Launch, so it must also
	// allow what runc init does after it (kernel/seccomp's @tcc-launch:
	// openat, openat2, statx, fstat, fstatfs, getdents64, fcntl, write,
	// close, futex and execve).
	Seccomp *configs.Seccomp

	// Stdin, Stdout and Stderr are the cell's standard streams; nil means
	// /dev/null on the host side. Writers that are not *os.File are fed by
	// a pipe and a goroutine until the last process of the cell exits;
	// Stdin must reach EOF (Wait waits for it too).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Progress, if not nil, is the cell's fd 3. The caller keeps and
	// closes it.
	Progress *os.File
}

// File is a host file shown to the cell.
type File struct {
	Path string // relative path under /cell, e.g. "bin/tool"
	// Source is an open regular file (read-only is enough), typically in
	// a root-only directory. The sandbox binds this open file, not a
	// path: replacing the host path after the caller opened and checked
	// it changes nothing. The caller keeps and closes it; Prepare no
	// longer needs it once it returns.
	Source *os.File
	Exec   bool // may be executed (only the entrypoint, usually)
}

// knownDevices are the only nodes a cell can ask for.
var knownDevices = map[string]devices.Rule{
	"null":    {Type: devices.CharDevice, Major: 1, Minor: 3, Permissions: "rw", Allow: true},
	"zero":    {Type: devices.CharDevice, Major: 1, Minor: 5, Permissions: "rw", Allow: true},
	"urandom": {Type: devices.CharDevice, Major: 1, Minor: 9, Permissions: "rw", Allow: true},
}

const (
	cellUID    = 1000 // the cell's uid and gid inside the sandbox
	cpuPeriod  = 100_000
	defaultNoF = 64
	maxIDLen   = 64
)

// initNoFile is RLIMIT_NOFILE while runc's init sets the sandbox up.
const initNoFile = 1024

// noFile is the cell's RLIMIT_NOFILE.
func (s *Spec) noFile() uint64 {
	if s.OpenFiles == 0 {
		return defaultNoF
	}
	return s.OpenFiles
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// validate checks what can be checked without touching the host.
func (s *Spec) validate() error {
	if !validID(s.ID) {
		return specErr("ID", "%q: use 1 to %d of A-Z a-z 0-9 _ - .", s.ID, maxIDLen)
	}
	if s.Seccomp == nil {
		return specErr("Seccomp", "required: every cell runs under a seccomp filter")
	}
	if s.Memory <= 0 {
		return specErr("Memory", "%d: give a limit in bytes", s.Memory)
	}
	if s.Pids <= 0 {
		return specErr("Pids", "%d: give a limit", s.Pids)
	}
	if s.CPU < 0 || s.CPU > 1024 {
		return specErr("CPU", "%g: give cores (0 for no quota)", s.CPU)
	}
	if s.Tmp < 0 {
		return specErr("Tmp", "%d: give bytes (0 for no /tmp)", s.Tmp)
	}
	seen := map[string]bool{}
	entry := false
	for i, f := range s.Files {
		field := fmt.Sprintf("Files[%d]", i)
		p := f.Path
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
			return specErr(field+".Path", "%q: give a clean relative path under /cell", p)
		}
		if seen[p] {
			return specErr(field+".Path", "%q: listed twice", p)
		}
		seen[p] = true
		if f.Source == nil {
			return specErr(field+".Source", "nil: give an open file")
		}
		if p == s.Entrypoint {
			if !f.Exec {
				return specErr(field+".Exec", "%q is the entrypoint: it must be Exec", p)
			}
			entry = true
		}
	}
	// A file cannot be both a file and a directory of another.
	for p := range seen {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if seen[d] {
				return specErr("Files", "%q is a file and also the directory of %q", d, p)
			}
		}
	}
	if !entry {
		return specErr("Entrypoint", "%q is not the Path of one of Files", s.Entrypoint)
	}
	devs := map[string]bool{}
	for i, d := range s.Devices {
		if _, ok := knownDevices[d]; !ok {
			return specErr(fmt.Sprintf("Devices[%d]", i), "%q: only null, zero and urandom exist", d)
		}
		if devs[d] {
			return specErr(fmt.Sprintf("Devices[%d]", i), "%q: listed twice", d)
		}
		devs[d] = true
	}
	for i, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return specErr(fmt.Sprintf("Env[%d]", i), "%q: give KEY=value", e)
		}
	}
	return nil
}

// checkSources checks that every source is a regular file the cell's uid
// can read (and run, for Exec files): the cell has no capabilities and its
// uid owns nothing on the host, so only the "other" bits count. It returns
// each file's device and inode, which Prepare compares with what the
// sandbox ends up showing.
func (s *Spec) checkSources() ([]fileID, error) {
	ids := make([]fileID, len(s.Files))
	for i, f := range s.Files {
		field := fmt.Sprintf("Files[%d].Source", i)
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Source.Fd()), &st); err != nil {
			return nil, specErr(field, "%s: %v", f.Source.Name(), err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, specErr(field, "%s: not a regular file", f.Source.Name())
		}
		if st.Mode&0o004 == 0 || f.Exec && st.Mode&0o001 == 0 {
			want := "0444"
			if f.Exec {
				want = "0555"
			}
			return nil, specErr(field, "%s: mode %#o: the cell cannot read it; make it %s (keep its directory root-only)", f.Source.Name(), st.Mode&0o7777, want)
		}
		ids[i] = fileID{dev: st.Dev, ino: st.Ino}
	}
	return ids, nil
}

// fileID is a file's identity on the host.
type fileID struct{ dev, ino uint64 }

// ids is the host id range of one sandbox.
type ids struct {
	base   uint32 // host id of the sandbox's root (uid/gid 0 inside)
	userNS bool
}

// cellHostID is the host uid (and gid) the cell runs as, in both modes:
// base+cellUID. No two live sandboxes share it.
func (x ids) cellHostID() int { return int(x.base) + cellUID }

// procUID is the uid the cell's process has in its own view.
func (x ids) procUID() int {
	if x.userNS {
		return cellUID
	}
	return x.cellHostID()
}

// libcontainerConfig builds the container config of a sandbox.
func (m *Manager) libcontainerConfig(s *Spec, x ids, rootfs string) *configs.Config {
	const (
		roFlags = unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	)
	// The /cell files are bound by makeRootfs, on the host side, from the
	// caller's open files; libcontainer's recursive bind of the rootfs
	// carries them into the sandbox.
	var mounts []*configs.Mount
	if s.Tmp > 0 {
		inodes := max(1024, s.Tmp/4096)
		mounts = append(mounts, &configs.Mount{
			Source: "tcc-tmp", Destination: "/tmp", Device: "tmpfs",
			Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC,
			Data:  fmt.Sprintf("size=%d,nr_inodes=%d,mode=0700,uid=%d,gid=%d", s.Tmp, inodes, x.procUID(), x.procUID()),
		})
	}
	// /dev is always a bind mount (of the rootfs's own, read-only dev
	// directory): that stops runc init from making its default /dev
	// (ptmx and fd symlinks, /dev/null reopening). The declared nodes are
	// bound from the host on top, which works with or without a user
	// namespace and never needs mknod.
	mounts = append(mounts, &configs.Mount{
		Source: rootfs + "/dev", Destination: "/dev", Device: "bind", Flags: roFlags | unix.MS_NOEXEC,
	})
	var rules []*devices.Rule
	for _, d := range s.Devices {
		mounts = append(mounts, &configs.Mount{
			// Read-only still lets the cell write to the device; it only
			// freezes the node's attributes.
			Source: "/dev/" + d, Destination: "/dev/" + d, Device: "bind",
			Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOEXEC,
		})
		r := knownDevices[d]
		rules = append(rules, &r)
	}
	// /proc is always mounted while runc init runs: in a user namespace it
	// needs a procfs after pivot_root and can only clone this one (see
	// Init). hideUndeclared removes it before Launch unless Proc is set.
	// subset=pid (Linux 5.8) shows the processes of the pid namespace and
	// nothing else: no /proc/sys, kcore, keys or sysrq-trigger.
	mounts = append(mounts, &configs.Mount{
		Source: "proc", Destination: "/proc", Device: "proc",
		Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC,
		Data:  "subset=pid",
	})
	var maskPaths, readonlyPaths []string
	if s.Proc {
		// The masks of runc's default spec are kept as a second line;
		// masking files needs /dev/null in the sandbox.
		readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
		if slices.Contains(s.Devices, "null") {
			maskPaths = []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi"}
		}
	}

	pids := s.Pids
	res := &cgroups.Resources{
		Memory:    s.Memory,
		PidsLimit: &pids,
		Devices:   rules,
	}
	if m.swapLimit {
		res.MemorySwap = s.Memory
	}
	if s.CPU > 0 {
		res.CpuPeriod = cpuPeriod
		res.CpuQuota = max(1000, int64(s.CPU*cpuPeriod))
	}

	// runc's init needs more descriptors while it builds the sandbox than
	// a small contract allows. In a user namespace, Prepare lowers NOFILE
	// to the contract once init is parked, before the cell exists (see
	// lowerNoFile). Without one, init already runs as the cell's uid by
	// then and lowering it would need CAP_SYS_RESOURCE: the contract's
	// value applies from runc's procReady on, and a very small one can
	// make init fail (Prepare says so).
	nofile := s.noFile()
	if !m.cfg.NoUserNS {
		nofile = max(nofile, initNoFile)
	}
	fsize := uint64(s.Tmp)
	rl := func(t int, v uint64) configs.Rlimit { return configs.Rlimit{Type: t, Hard: v, Soft: v} }

	ns := configs.Namespaces{
		{Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC},
		{Type: configs.NEWPID}, {Type: configs.NEWNET}, {Type: configs.NEWCGROUP},
	}
	oomAdj := 1000 // under host memory pressure, cells go first
	cfg := &configs.Config{
		Rootfs:     rootfs,
		Readonlyfs: true,
		Mounts:     mounts,
		Hostname:   "cell",
		Namespaces: ns,
		// Empty, not nil: every capability set is cleared.
		Capabilities:    &configs.Capabilities{},
		NoNewPrivileges: true,
		Networks:        []*configs.Network{{Type: "loopback"}},
		Cgroups: &cgroups.Cgroup{
			Path:      path.Join(m.cfg.CgroupParent, s.ID),
			Resources: res,
		},
		Rlimits: []configs.Rlimit{
			rl(unix.RLIMIT_NOFILE, nofile),
			// 1, not 0: a core_pattern that pipes to a helper ignores
			// RLIMIT_CORE except for the value 1, which the kernel takes
			// for a crash of the helper itself and dumps nothing
			// (measured on 6.18, note 002). A file needs at least a page,
			// so no core file is written either. The cell cannot lower it
			// to 0: kernel/seccomp never lets prlimit64 or setrlimit
			// change RLIMIT_CORE.
			rl(unix.RLIMIT_CORE, 1),
			rl(unix.RLIMIT_FSIZE, fsize),
			rl(unix.RLIMIT_MEMLOCK, 0),
			rl(unix.RLIMIT_MSGQUEUE, 0),
		},
		OomScoreAdj:   &oomAdj,
		MaskPaths:     maskPaths,
		ReadonlyPaths: readonlyPaths,
		Seccomp:       s.Seccomp,
	}
	if x.userNS {
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWUSER})
		cfg.UIDMappings = []configs.IDMap{{ContainerID: 0, HostID: int64(x.base), Size: idsPerSandbox}}
		cfg.GIDMappings = []configs.IDMap{{ContainerID: 0, HostID: int64(x.base), Size: idsPerSandbox}}
	}
	return cfg
}
