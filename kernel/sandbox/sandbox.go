package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	// Registers the device-rule managers (v1 devices.allow, v2 BPF
	// program); without it any device rule fails.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Sandbox is one call's sandbox: prepared (runc init parked on its exec
// fifo, the cell's binary not yet started), then launched, then destroyed.
// Its methods are safe for concurrent use.
type Sandbox struct {
	m      *Manager
	id     string
	slot   int
	ids    ids
	rootfs string
	cpu    float64 // the contract's quota, 0 = none

	c      *libcontainer.Container
	p      *libcontainer.Process
	pid    int               // init (then cell) pid on the host
	paths  map[string]string // cgroup dirs, by controller ("" = cgroup2)
	cg2    string            // cgroup2 dir, "" on a v1-only host
	cgid   uint64
	v1Dir  string // a v1 dir listing the cell's processes (pids, memory)
	memDir string
	cpuDir string // cpu controller dir (v1), or cg2 on a v2 host
	acct   string // cpuacct dir (v1)
	pidDir string

	done    chan struct{} // closed once init is reaped
	exit    Exit
	waitErr error

	madeRootfs bool // the rootfs dir is this sandbox's
	started    bool // Start was called: cgroups may exist

	mu       sync.Mutex
	launched bool
	killed   bool
	wiped    bool
	report   WipeReport
}

// Exit is how a cell ended.
type Exit struct {
	Code   int            // exit status; -1 if a signal ended it
	Signal syscall.Signal // the signal that ended it; 0 if it exited
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return "killed by " + unix.SignalName(e.Signal)
	}
	return "exit " + strconv.Itoa(e.Code)
}

// Stats are read from the sandbox's cgroups; they stay readable until
// Destroy.
type Stats struct {
	MemoryPeak    uint64        // bytes, highest usage seen
	CPUTime       time.Duration // user+system of all processes
	OOMKills      uint64        // processes the memory limit killed
	PidsLimitHits uint64        // forks refused by the pids limit
}

// WipeReport says what Destroy removed and what, checked afterwards, was
// still there.
type WipeReport struct {
	ID        string
	Removed   []string // objects removed, e.g. "cgroup /sys/fs/cgroup/memory/tcc/x"
	Remaining []string // objects still present after the wipe; empty when clean
	Err       error    // what failed while wiping, if anything
	Duration  time.Duration
}

// Clean reports whether nothing remained.
func (r WipeReport) Clean() bool { return len(r.Remaining) == 0 && r.Err == nil }

// Prepare builds a sandbox for s and starts runc init in it; init sets up
// the namespaces, mounts, cgroups, rlimits, capabilities and seccomp filter,
// then waits on the exec fifo for Launch. The cell's binary has not run
// when Prepare returns, and the sandbox's cgroup2 id is known.
//
// On error Prepare has destroyed what it made; the *Error's Wipe reports
// that clean-up (nil when it had made nothing). Prepare must be followed by
// Destroy.
func (m *Manager) Prepare(ctx context.Context, s Spec) (_ *Sandbox, err error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	files, err := s.checkSources()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "prepare", ID: s.ID, Err: err}
	}
	slot, err := m.acquire(s.ID)
	if err != nil {
		return nil, &Error{Op: "prepare", ID: s.ID, Err: err}
	}
	sb := &Sandbox{
		m:      m,
		id:     s.ID,
		slot:   slot,
		ids:    m.ids(slot),
		rootfs: filepath.Join(m.rootfsDir, s.ID),
		cpu:    s.CPU,
		done:   make(chan struct{}),
	}
	defer func() {
		if err != nil {
			rep := sb.Destroy()
			err = &Error{Op: "prepare", ID: s.ID, Err: err, Wipe: &rep}
		}
	}()
	if err := sb.prepare(ctx, &s, files); err != nil {
		return nil, err
	}
	return sb, nil
}

func (sb *Sandbox) prepare(ctx context.Context, s *Spec, files []fileID) error {
	m := sb.m
	if err := os.Mkdir(sb.rootfs, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s is left over: run Sweep", ErrExists, sb.rootfs)
		}
		return fmt.Errorf("rootfs: %w", err)
	}
	sb.madeRootfs = true
	if err := makeRootfs(sb.rootfs, s); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	cfg := m.libcontainerConfig(s, sb.ids, sb.rootfs)
	c, err := libcontainer.Create(m.stateDir, s.ID, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return fmt.Errorf("%w: libcontainer state %s is left over: run Sweep", ErrExists, filepath.Join(m.stateDir, s.ID))
		}
		return fmt.Errorf("create: %w", err)
	}
	sb.c = c
	p := &libcontainer.Process{
		Args:   append([]string{"/cell/" + s.Entrypoint}, s.Args...),
		Env:    s.Env,
		UID:    sb.ids.procUID(),
		GID:    sb.ids.procUID(),
		Cwd:    "/",
		Stdin:  s.Stdin,
		Stdout: s.Stdout,
		Stderr: s.Stderr,
		Init:   true,
	}
	if s.Progress != nil {
		p.ExtraFiles = []*os.File{s.Progress}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sb.started = true // from here on, cgroups may exist
	if err := c.Start(p); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	sb.p = p
	sb.pid, _ = p.Pid()
	// init is the daemon's own child (runc starts it with CLONE_PARENT) and
	// only reap reaps it: until reap starts, even a dead init keeps its
	// pid, so the pid-based steps below (cgroup2 join, prlimit, the bind
	// check through /proc/PID/root) cannot reach a process that reused it.
	defer func() { go sb.reap() }()

	st, err := c.State()
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	sb.paths = st.CgroupPaths
	if err := sb.findCgroups(); err != nil {
		return fmt.Errorf("cgroup2: %w", err)
	}
	if err := hideUndeclared(sb.rootfs, s); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := sb.checkBinds(s, files); err != nil {
		return err
	}
	if !m.cfg.NoUserNS {
		if err := lowerNoFile(sb.pid, s.noFile()); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// checkBinds checks that every /cell file in the sandbox is the file the
// caller opened (same device and inode), as seen through init's root.
func (sb *Sandbox) checkBinds(s *Spec, want []fileID) error {
	root := fmt.Sprintf("/proc/%d/root/cell", sb.pid)
	for i, f := range s.Files {
		var st unix.Stat_t
		p := filepath.Join(root, f.Path)
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("check /cell/%s: %w", f.Path, &os.PathError{Op: "lstat", Path: p, Err: err})
		}
		if st.Dev != want[i].dev || st.Ino != want[i].ino {
			return fmt.Errorf("/cell/%s is not the file that was opened for it (%s): device %d inode %d, want %d %d",
				f.Path, f.Source.Name(), st.Dev, st.Ino, want[i].dev, want[i].ino)
		}
	}
	return nil
}

// lowerNoFile sets the parked init's RLIMIT_NOFILE to the contract's. The
// limit bounds new descriptors only: init, which holds about ten with
// holes below eight, can still reopen its exec fifo and exec the cell,
// which then starts under exactly the contract's limit.
func lowerNoFile(pid int, n uint64) error {
	lim := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		return fmt.Errorf("set RLIMIT_NOFILE of init: %w", os.NewSyscallError("prlimit64", err))
	}
	return nil
}

// findCgroups locates the sandbox's cgroup directories and makes sure init
// is in its own cgroup2 directory, whose inode is the cell's BPF identity.
func (sb *Sandbox) findCgroups() error {
	m := sb.m
	if m.unified {
		sb.cg2 = sb.paths[""]
		sb.memDir, sb.cpuDir, sb.pidDir, sb.v1Dir = sb.cg2, sb.cg2, sb.cg2, ""
	} else {
		sb.memDir, sb.cpuDir, sb.acct, sb.pidDir = sb.paths["memory"], sb.paths["cpu"], sb.paths["cpuacct"], sb.paths["pids"]
		sb.v1Dir = sb.pidDir
		if m.cg2Mount != "" {
			sb.cg2 = filepath.Join(m.cg2Mount, m.cfg.CgroupParent, sb.id)
			rel := filepath.Join(m.cfg.CgroupParent, sb.id)
			if err := joinCgroup2(sb.cg2, rel, sb.pid); err != nil {
				return err
			}
		}
	}
	if sb.cg2 == "" {
		return nil
	}
	id, err := cgroupID(sb.cg2)
	if err != nil {
		return err
	}
	sb.cgid = id
	return nil
}

// reap waits for init (later the cell) to exit and records how.
func (sb *Sandbox) reap() {
	ps, err := sb.p.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil
	}
	sb.waitErr = err
	sb.exit = Exit{Code: -1}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Exited():
				sb.exit.Code = ws.ExitStatus()
			case ws.Signaled():
				sb.exit.Signal = ws.Signal()
			}
		}
	}
	close(sb.done)
}

// ID returns the sandbox's ID.
func (sb *Sandbox) ID() string { return sb.id }

// Pid returns the host pid of the sandbox's init: runc init until Launch,
// then the cell's first process.
func (sb *Sandbox) Pid() int { return sb.pid }

// CgroupID returns the id of the sandbox's own cgroup2 directory, which
// bpf_get_current_cgroup_id() returns for every process of the cell; 0 on
// a host without cgroup2. It is valid from Prepare to Destroy.
func (sb *Sandbox) CgroupID() uint64 { return sb.cgid }

// HostUID returns the host uid the cell runs as; no other live sandbox
// uses it.
func (sb *Sandbox) HostUID() int { return sb.ids.cellHostID() }

// Launch starts the cell's binary: runc init, parked since Prepare, execs
// it. It returns once the exec has happened (or failed).
func (sb *Sandbox) Launch() error {
	sb.mu.Lock()
	if sb.launched || sb.killed || sb.wiped {
		sb.mu.Unlock()
		return &Error{Op: "launch", ID: sb.id, Err: ErrState}
	}
	sb.launched = true
	sb.mu.Unlock()
	if err := sb.c.Exec(); err != nil {
		return &Error{Op: "launch", ID: sb.id, Err: err}
	}
	return nil
}

// Wait waits for the cell to exit and for its output to be copied, or for
// ctx to end: then it returns ctx's error and the cell goes on (Kill is the
// caller's decision). A cell that does not die even when killed (stuck in
// the kernel) would hold Wait for ever: bound it with ctx.
func (sb *Sandbox) Wait(ctx context.Context) (Exit, error) {
	sb.mu.Lock()
	ok := sb.launched || sb.killed
	sb.mu.Unlock()
	if !ok {
		return Exit{}, &Error{Op: "wait", ID: sb.id, Err: ErrState}
	}
	select {
	case <-sb.done:
	case <-ctx.Done():
		return Exit{}, &Error{Op: "wait", ID: sb.id, Err: ctx.Err()}
	}
	if sb.waitErr != nil {
		return sb.exit, &Error{Op: "wait", ID: sb.id, Err: sb.waitErr}
	}
	return sb.exit, nil
}

// Kill SIGKILLs every process of the sandbox: init (which takes its pid
// namespace with it) and, through the cgroup, anything else in it.
func (sb *Sandbox) Kill() error {
	sb.mu.Lock()
	sb.killed = true
	sb.mu.Unlock()
	var errs []error
	if sb.p != nil {
		select {
		case <-sb.done:
		default:
			// Go's os.Process signals through a pidfd: no pid reuse.
			if err := sb.p.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, err)
			}
		}
	}
	if err := killCgroup(sb.cg2, sb.v1Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return &Error{Op: "kill", ID: sb.id, Err: err}
	}
	return nil
}

// Stats reads the sandbox's resource use from its cgroups.
func (sb *Sandbox) Stats() (Stats, error) {
	var st Stats
	var errs []error
	get := func(v *uint64, f func() (uint64, error)) {
		x, err := f()
		if err != nil {
			errs = append(errs, err)
		}
		*v = x
	}
	var cpu uint64
	if sb.m.unified {
		get(&st.MemoryPeak, func() (uint64, error) { return readUint(sb.memDir, "memory.peak") })
		get(&cpu, func() (uint64, error) { return readKey(sb.cpuDir, "cpu.stat", "usage_usec") })
		st.CPUTime = time.Duration(cpu) * time.Microsecond
		get(&st.OOMKills, func() (uint64, error) { return readKey(sb.memDir, "memory.events", "oom_kill") })
	} else {
		get(&st.MemoryPeak, func() (uint64, error) { return readUint(sb.memDir, "memory.max_usage_in_bytes") })
		get(&cpu, func() (uint64, error) { return readUint(sb.acct, "cpuacct.usage") })
		st.CPUTime = time.Duration(cpu)
		get(&st.OOMKills, func() (uint64, error) { return readKey(sb.memDir, "memory.oom_control", "oom_kill") })
	}
	get(&st.PidsLimitHits, func() (uint64, error) { return readKey(sb.pidDir, "pids.events", "max") })
	if err := errors.Join(errs...); err != nil {
		return st, &Error{Op: "stats", ID: sb.id, Err: err}
	}
	return st, nil
}

// SetCPU changes the CPU quota of the sandbox to cores, for the monitor's
// "throttle" response. It can lower the quota, and raise it again up to
// the contract's, never above.
func (sb *Sandbox) SetCPU(cores float64) error {
	if cores <= 0 || sb.cpu > 0 && cores > sb.cpu {
		return &Error{Op: "set cpu", ID: sb.id, Err: fmt.Errorf("%w: %g cores (contract %g)", ErrState, cores, sb.cpu)}
	}
	quota := max(1000, int64(cores*cpuPeriod))
	var err error
	if sb.m.unified {
		err = cgroups.WriteFile(sb.cpuDir, "cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod))
	} else {
		if err = cgroups.WriteFile(sb.cpuDir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err == nil {
			err = cgroups.WriteFile(sb.cpuDir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
		}
	}
	if err != nil {
		return &Error{Op: "set cpu", ID: sb.id, Err: err}
	}
	return nil
}

// reapTimeout bounds how long Destroy waits for killed processes to go.
const reapTimeout = 5 * time.Second

// Destroy kills every process of the sandbox, removes its container state,
// cgroups (in every hierarchy), mounts and directories, then checks that
// none of them remains and reports what did. It is idempotent: later calls
// return the first report. It only touches what this sandbox made: after a
// Prepare that failed on leftovers, those are Sweep's.
func (sb *Sandbox) Destroy() WipeReport {
	sb.mu.Lock()
	if sb.wiped {
		defer sb.mu.Unlock()
		return sb.report
	}
	sb.wiped = true
	sb.mu.Unlock()

	start := time.Now()
	r := WipeReport{ID: sb.id}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var cgdirs []string
	if sb.started {
		var err error
		cgdirs, err = sb.m.cgroupPaths(sb.id)
		fail(err)
		if err := sb.Kill(); err != nil {
			fail(err)
		}
	}
	reaped := true
	if sb.p != nil {
		select {
		case <-sb.done:
			r.Removed = append(r.Removed, fmt.Sprintf("process %d", sb.pid))
		case <-time.After(reapTimeout):
			reaped = false
		}
	}
	if sb.c != nil {
		// Removes the cgroups libcontainer made and its state dir.
		fail(sb.c.Destroy())
	}
	for _, d := range cgdirs {
		if cgroups.PathExists(d) {
			fail(removeCgroup(d))
		}
	}
	if sb.started {
		r.Removed = append(r.Removed, "cgroups "+filepath.Join(sb.m.cfg.CgroupParent, sb.id))
	}
	stateDir := filepath.Join(sb.m.stateDir, sb.id)
	if sb.c != nil {
		fail(os.RemoveAll(stateDir))
		r.Removed = append(r.Removed, "state "+stateDir)
	}
	if sb.madeRootfs {
		fail(removeRootfs(sb.rootfs))
		r.Removed = append(r.Removed, "rootfs "+sb.rootfs)
	}

	// Check.
	if !reaped {
		r.Remaining = append(r.Remaining, fmt.Sprintf("process %d (init, not reaped)", sb.pid))
	}
	for _, d := range cgdirs {
		if !cgroups.PathExists(d) {
			continue
		}
		r.Remaining = append(r.Remaining, "cgroup "+d)
		for _, p := range pidsOf(d) {
			r.Remaining = append(r.Remaining, fmt.Sprintf("process %d in %s", p, d))
		}
	}
	if sb.madeRootfs {
		for _, mp := range mountsUnder(sb.rootfs) {
			r.Remaining = append(r.Remaining, "mount "+mp)
		}
		if _, err := os.Lstat(sb.rootfs); err == nil {
			r.Remaining = append(r.Remaining, "dir "+sb.rootfs)
		}
	}
	if sb.c != nil {
		if _, err := os.Lstat(stateDir); err == nil {
			r.Remaining = append(r.Remaining, "dir "+stateDir)
		}
	}
	// The id range is free once nothing runs under it; if something
	// remains, the range stays taken, and the ID is left to Sweep.
	sb.m.release(sb.id, sb.slot, len(r.Remaining) == 0)
	r.Err = errors.Join(errs...)
	r.Duration = time.Since(start)

	sb.mu.Lock()
	sb.report = r
	sb.mu.Unlock()
	return r
}

func (r WipeReport) String() string {
	if r.Clean() {
		return fmt.Sprintf("sandbox %s wiped in %v", r.ID, r.Duration)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sandbox %s NOT wiped:", r.ID)
	for _, x := range r.Remaining {
		b.WriteString(" [" + x + "]")
	}
	if r.Err != nil {
		b.WriteString(" error: " + r.Err.Error())
	}
	return b.String()
}
