package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// Config configures a Manager. The zero value of every field is a usable
// default.
type Config struct {
	// Root holds libcontainer's state ("state/ID") and the sandboxes'
	// root filesystems ("rootfs/ID"). Default /var/lib/tcc/sandboxes.
	// It is made mode 0711: in a user namespace the sandbox's root must
	// be able to walk to its rootfs, but not list anything.
	Root string
	// CgroupParent is the absolute cgroup path under which each sandbox
	// gets CgroupParent/ID in every hierarchy. Default "/tcc".
	CgroupParent string
	// NoUserNS runs sandboxes without a user namespace. By default each
	// sandbox has one, mapping its ids 0..65535 to a host range no other
	// live sandbox uses.
	NoUserNS bool
	// IDBase is the first host uid/gid of the sandboxes' ranges; slot n
	// uses IDBase+n*65536 ... +65535, and the cell runs as host uid
	// IDBase+n*65536+1000 (with or without a user namespace). Default
	// 1<<30, far above ordinary users and the usual /etc/subuid ranges
	// (100000 and up). New refuses a range that overlaps one in
	// /etc/subuid or /etc/subgid. It cannot see ids handed out at run
	// time: systemd's container range (0x80000-0x6FFFFFFF, systemd-nspawn
	// --private-users=pick, homed) includes the default, so do not run
	// those on the same host.
	IDBase uint32
	// MaxSandboxes bounds the number of live sandboxes (id ranges).
	// Default 1024.
	MaxSandboxes int
}

const (
	defaultRoot         = "/var/lib/tcc/sandboxes"
	defaultCgroupParent = "/tcc"
	defaultIDBase       = 1 << 30
	defaultMax          = 1024
	idsPerSandbox       = 65536
)

// Features is what New found out about the host, for tccctl status.
type Features struct {
	// Cgroups is "v2" (unified), "hybrid" (v1 controllers, and cgroup2
	// for ids) or "v1" (no cgroup2: CgroupID is 0).
	Cgroups string
	UserNS  bool // sandboxes get a user namespace
	// SwapLimit reports whether memory limits also stop swapping (v1
	// needs swap accounting; without it a cell can swap).
	SwapLimit bool
	// ExeSeal is how libcontainer hides the daemon's binary from each
	// sandbox (CVE-2019-5736): "overlayfs" costs well under 1 ms, "memfd"
	// copies the whole binary for every sandbox (about 1 ms per MiB).
	ExeSeal string
	// FavorDynmods reports whether cgroup2 is mounted with favordynmods,
	// which spares the first cgroup attach after an idle spell an RCU
	// grace period (5-20 ms here).
	FavorDynmods bool
	// CorePattern is kernel.core_pattern as New found it. A file name or
	// a |helper is harmless (cells run with RLIMIT_CORE 1, which stops
	// both); New refuses a @socket, which ignores RLIMIT_CORE.
	CorePattern string
}

// Manager prepares sandboxes on this host. It is safe for concurrent use.
type Manager struct {
	cfg       Config
	features  Features
	stateDir  string // libcontainer root
	rootfsDir string
	cg2Mount  string // cgroup2 mount point, "" if none
	unified   bool   // pure cgroup v2 host
	swapLimit bool   // the memory controller can limit swap

	// lock holds an exclusive flock on the cgroup parent for the
	// Manager's life (lockParent).
	lock *os.File

	mu    sync.Mutex
	slots []bool              // id ranges in use
	live  map[string]struct{} // IDs of sandboxes being prepared or alive
}

// New checks the host and returns a Manager. It creates Root if needed.
func New(cfg Config) (*Manager, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if cfg.Root == "" {
		cfg.Root = defaultRoot
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = defaultCgroupParent
	}
	if cfg.IDBase == 0 {
		cfg.IDBase = defaultIDBase
	}
	if cfg.MaxSandboxes == 0 {
		cfg.MaxSandboxes = defaultMax
	}
	if !filepath.IsAbs(cfg.Root) || filepath.Clean(cfg.Root) != cfg.Root {
		return nil, fmt.Errorf("sandbox: Root %q: give a clean absolute path", cfg.Root)
	}
	// A relative cgroup path would land under the daemon's own cgroup.
	if !path.IsAbs(cfg.CgroupParent) || path.Clean(cfg.CgroupParent) != cfg.CgroupParent || cfg.CgroupParent == "/" {
		return nil, fmt.Errorf("sandbox: CgroupParent %q: give a clean absolute cgroup path such as /tcc", cfg.CgroupParent)
	}
	if uint64(cfg.IDBase)+uint64(cfg.MaxSandboxes)*idsPerSandbox > 1<<32-2 {
		return nil, fmt.Errorf("sandbox: IDBase %d with %d sandboxes of %d ids passes the last uid", cfg.IDBase, cfg.MaxSandboxes, idsPerSandbox)
	}
	corePattern, err := checkHost(cfg)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:       cfg,
		stateDir:  filepath.Join(cfg.Root, "state"),
		rootfsDir: filepath.Join(cfg.Root, "rootfs"),
		slots:     make([]bool, cfg.MaxSandboxes),
		live:      map[string]struct{}{},
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.Root, 0o711}, {m.stateDir, 0o700}, {m.rootfsDir, 0o711}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if !cfg.NoUserNS {
		if _, err := os.Stat("/proc/self/ns/user"); err != nil {
			return nil, fmt.Errorf("sandbox: user namespaces: %w (set NoUserNS)", ErrNotSupported)
		}
		// runc init, as the sandbox's unprivileged root, walks to the
		// rootfs by path.
		for d := filepath.Dir(cfg.Root); ; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil {
				return nil, fmt.Errorf("sandbox: %w", err)
			}
			if st.Mode().Perm()&0o001 == 0 {
				return nil, fmt.Errorf("sandbox: Root %s: its parent %s (mode %#o) is not searchable by others, which a user-namespaced sandbox needs: chmod o+x it or choose another Root", cfg.Root, d, st.Mode().Perm())
			}
			if d == "/" {
				break
			}
		}
	}
	if m.cg2Mount, err = cgroup2Mount(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	m.unified = cgroups.IsCgroup2UnifiedMode()
	// libcontainer's managers skip a controller the host lacks, silently:
	// a sandbox would then run without that limit.
	if m.unified {
		b, err := os.ReadFile(filepath.Join(m.cg2Mount, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		have := strings.Fields(string(b))
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !slices.Contains(have, c) {
				return nil, fmt.Errorf("sandbox: cgroup2 controller %s: %w", c, ErrNotSupported)
			}
		}
		m.swapLimit = true // fs2 skips memory.swap.max when swap is off
	} else {
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "devices"} {
			if _, err := cgroups.FindCgroupMountpoint("", c); err != nil {
				return nil, fmt.Errorf("sandbox: cgroup v1 controller %s: %w", c, ErrNotSupported)
			}
		}
		mem, _ := cgroups.FindCgroupMountpoint("", "memory")
		m.swapLimit = cgroups.PathExists(filepath.Join(mem, "memory.memsw.limit_in_bytes"))
	}
	m.features = Features{
		Cgroups:      "v1",
		UserNS:       !cfg.NoUserNS,
		SwapLimit:    m.swapLimit,
		ExeSeal:      exeSealMode(m.stateDir),
		FavorDynmods: favorDynmods(m.cg2Mount),
		CorePattern:  corePattern,
	}
	switch {
	case m.unified:
		m.features.Cgroups = "v2"
	case m.cg2Mount != "":
		m.features.Cgroups = "hybrid"
	}
	if err := m.lockParent(); err != nil {
		return nil, err
	}
	return m, nil
}

// lockParent takes an exclusive flock on the cgroup parent's directory (in
// the cgroup2 hierarchy, else the first one mounted), made if needed, and
// keeps it until Close. Sweep removes whatever it finds under the parent:
// a second daemon on the same parent would kill the first one's live
// sandboxes as orphans. With the lock it fails to start instead.
func (m *Manager) lockParent() error {
	hier := m.cg2Mount
	if hier == "" {
		hs, err := hierarchies()
		if err != nil || len(hs) == 0 {
			return fmt.Errorf("sandbox: no cgroup hierarchy to lock the cgroup parent in: %v", err)
		}
		hier = hs[0]
	}
	dir := filepath.Join(hier, m.cfg.CgroupParent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: cgroup parent: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sandbox: cgroup parent: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.EWOULDBLOCK:
		f.Close()
		return fmt.Errorf("sandbox: cgroup parent %s: %w: another tccd owns it (its sandboxes live there); give each daemon its own --cgroup-parent", m.cfg.CgroupParent, ErrParentInUse)
	case err != nil:
		f.Close()
		return fmt.Errorf("sandbox: lock cgroup parent %s: %w", dir, os.NewSyscallError("flock", err))
	}
	m.lock = f
	return nil
}

// The host files New checks; variables so that tests can point them
// elsewhere. subIDFiles list the subordinate id ranges of users
// (newuidmap's).
var (
	subIDFiles      = []string{"/etc/subuid", "/etc/subgid"}
	corePatternFile = "/proc/sys/kernel/core_pattern"
)

// checkHost checks what outside the sandboxes' own objects could undo
// them, and returns kernel.core_pattern.
func checkHost(cfg Config) (corePattern string, err error) {
	if err := checkSubIDs(uint64(cfg.IDBase), uint64(cfg.IDBase)+uint64(cfg.MaxSandboxes)*idsPerSandbox); err != nil {
		return "", err
	}
	return checkCorePattern()
}

// checkSubIDs refuses host ids [lo, hi) that a subordinate range gives to
// a user: that user's rootless containers could run processes under a
// cell's host uid, and signal or trace it.
func checkSubIDs(lo, hi uint64) error {
	for _, file := range subIDFiles {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) != 3 || strings.HasPrefix(f[0], "#") {
				continue
			}
			start, err1 := strconv.ParseUint(f[1], 10, 32)
			n, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 != nil || err2 != nil || n == 0 {
				continue
			}
			if start < hi && lo < start+n {
				return fmt.Errorf("sandbox: %s line %d gives %s the host ids %d-%d, which overlap the sandboxes' %d-%d: that user's processes could share a cell's uid; move the range or the sandboxes' IDBase",
					file, i+1, f[0], start, start+n-1, lo, hi-1)
			}
		}
	}
	return nil
}

// checkCorePattern reads kernel.core_pattern. Cells run with RLIMIT_CORE
// 1, which stops core files and |helpers (the kernel dumps nothing to a
// pipe when the limit is 1). A @socket pattern (Linux 6.16) ignores the
// limit: every crashing or seccomp-killed cell would hand its memory to a
// root service on the host, so New refuses it.
func checkCorePattern() (string, error) {
	b, err := os.ReadFile(corePatternFile)
	if err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	p := strings.TrimSpace(string(b))
	if strings.HasPrefix(p, "@") {
		return p, fmt.Errorf("sandbox: kernel.core_pattern %q sends core dumps to a socket, which ignores the cells' RLIMIT_CORE: a crashing cell would hand its memory to the host's coredump service; set kernel.core_pattern to a file name (core) or a |helper: %w", p, ErrNotSupported)
	}
	return p, nil
}

// Features returns what New found out about the host.
func (m *Manager) Features() Features { return m.features }

// exeSealMode tries libcontainer's sealing of the daemon's binary once.
func exeSealMode(tmpDir string) string {
	if exeseal.IsSelfExeCloned() {
		return "self" // already a sealed memfd: nothing to do per sandbox
	}
	f, err := exeseal.CloneSelfExe(tmpDir)
	if err != nil {
		return "unavailable: " + err.Error()
	}
	defer f.Close()
	if exeseal.IsCloned(f) {
		return "memfd"
	}
	return "overlayfs"
}

func favorDynmods(cg2Mount string) bool {
	if cg2Mount == "" {
		return false
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(cg2Mount))
	if err != nil || len(mounts) == 0 {
		return false
	}
	return slices.Contains(strings.Split(mounts[0].VFSOptions, ","), "favordynmods") ||
		slices.Contains(strings.Split(mounts[0].Options, ","), "favordynmods")
}

// acquire reserves id and a free id range.
func (m *Manager) acquire(id string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live[id]; ok {
		return 0, ErrExists
	}
	for i, used := range m.slots {
		if !used {
			m.slots[i] = true
			m.live[id] = struct{}{}
			return i, nil
		}
	}
	return 0, ErrBusy
}

func (m *Manager) release(id string, slot int, freeSlot bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if freeSlot {
		m.slots[slot] = false
	}
	delete(m.live, id)
}

func (m *Manager) isLive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live[id]
	return ok
}

// ids returns the id range of a slot.
func (m *Manager) ids(slot int) ids {
	return ids{base: m.cfg.IDBase + uint32(slot)*idsPerSandbox, userNS: !m.cfg.NoUserNS}
}

// cgroupPaths returns the directories a sandbox's cgroup has in every
// hierarchy of the host, whether or not they exist.
func (m *Manager) cgroupPaths(id string) ([]string, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, filepath.Join(h, m.cfg.CgroupParent, id))
	}
	return out, nil
}

// Sweep removes what sandboxes of an earlier, crashed daemon left behind:
// their processes (killed through their cgroups), cgroups under
// CgroupParent in every hierarchy, mounts and directories under Root, and
// libcontainer state. Sandboxes of this Manager are left alone. It returns
// what it removed, one line per object; the error lists what it could not.
//
// Call it at daemon start-up: leftover state makes the next Prepare of the
// same ID fail with ErrExists.
func (m *Manager) Sweep(ctx context.Context) (removed []string, err error) {
	var errs []error
	// Processes first: nothing may hold the mounts or cgroups.
	dirs, err := cgroupDirsUnder(m.cfg.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("sandbox: sweep: %w", err)
	}
	ids := make([]string, 0, len(dirs))
	for id := range dirs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if m.isLive(id) {
			continue
		}
		var v2, v1 string
		for _, d := range dirs[id] {
			if m.cg2Mount != "" && d == filepath.Join(m.cg2Mount, m.cfg.CgroupParent, id) {
				v2 = d
			} else if v1 == "" {
				v1 = d
			}
		}
		pids := pidsOf(v1)
		if v2 != "" {
			pids = append(pids, pidsOf(v2)...)
		}
		if err := killCgroup(v2, v1); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %w", id, err))
		}
		for _, p := range dedup(pids) {
			removed = append(removed, fmt.Sprintf("process %d (sandbox %s)", p, id))
		}
		for _, d := range dirs[id] {
			if err := removeCgroup(d); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, "cgroup "+d)
		}
	}
	// Mounts and root filesystems.
	ents, _ := os.ReadDir(m.rootfsDir)
	for _, e := range ents {
		if m.isLive(e.Name()) {
			continue
		}
		dir := filepath.Join(m.rootfsDir, e.Name())
		for _, mp := range mountsUnder(dir) {
			removed = append(removed, "mount "+mp)
		}
		if err := removeRootfs(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "rootfs "+dir)
	}
	// libcontainer state.
	ents, _ = os.ReadDir(m.stateDir)
	for _, e := range ents {
		if m.isLive(e.Name()) {
			continue
		}
		dir := filepath.Join(m.stateDir, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "state "+dir)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sandbox: sweep: %w", err)
	}
	return removed, nil
}

func dedup(xs []int) []int {
	sort.Ints(xs)
	out := xs[:0]
	for i, x := range xs {
		if i == 0 || x != xs[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// Close removes what the Manager made for all its sandboxes: the cgroup
// parent in every hierarchy and the Root's subdirectories, if they are
// empty. Live sandboxes keep them busy; Close leaves what it cannot remove
// and says what.
func (m *Manager) Close() error {
	hs, err := hierarchies()
	if err != nil {
		return fmt.Errorf("sandbox: close: %w", err)
	}
	var errs []error
	for _, h := range hs {
		d := filepath.Join(h, m.cfg.CgroupParent)
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range []string{m.stateDir, m.rootfsDir, m.cfg.Root} {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Last: until its directories are gone, the parent is still ours.
	if m.lock != nil {
		m.lock.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox: close: %w", err)
	}
	return nil
}
