package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var modes = []struct {
	name   string
	userNS bool
}{{"userns", true}, {"nouserns", false}}

// TestIsolation runs the probe in a sandbox with everything declared
// (proc, tmp, /dev/null) and checks what it saw.
func TestIsolation(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			s := probeSpec("tcc-iso")
			s.Proc = true
			s.Tmp = 1 << 20
			s.Devices = []string{"null"}
			s.Stdin = strings.NewReader("hello")
			// With a user namespace, a limit smaller than runc's init
			// needs while it builds the sandbox: the cell must still
			// start, under exactly this limit.
			nofile := uint64(64)
			if mode.userNS {
				nofile = 12
			}
			s.OpenFiles = nofile
			r := runProbe(t, m, s)

			checks := []struct {
				name      string
				got, want any
			}{
				{"pid", r.Pid, 1},
				{"uid", r.UID, m.ids(0).procUID()},
				{"gid", r.GID, m.ids(0).procUID()},
				{"euid", r.EUID, m.ids(0).procUID()},
				{"groups", len(r.Groups), 0},
				{"hostname", r.Hostname, "cell"},
				{"CapEff", r.CapEff, uint64(0)},
				{"CapPrm", r.CapPrm, uint64(0)},
				{"CapInh", r.CapInh, uint64(0)},
				{"CapBnd", r.CapBnd, uint64(0)},
				{"CapAmb", r.CapAmb, uint64(0)},
				{"no_new_privs", r.NoNewPrivs, 1},
				{"seccomp mode", r.Seccomp, 2},
				{"root", strings.Join(r.Root, " "), "cell dev proc tmp"},
				{"dev", strings.Join(r.Dev, " "), "null"},
				{"write /", r.WriteRoot, "EROFS"},
				{"write /cell", r.WriteCell, "EROFS"},
				{"mkdir /cell/d", r.Mkdir, "EROFS"},
				{"write /tmp", r.WriteTmp, ""},
				{"/tmp size", r.TmpSize, int64(1 << 20)},
				{"/tmp fill stops at", r.TmpFilled, int64(1 << 20)},
				{"exec from /tmp", r.ExecTmp, "EACCES"},
				{"kill(host pid)", r.HostPidVisible, "ESRCH"},
				{"/proc pids", fmt.Sprint(r.ProcPids), "[1]"},
				{"/proc entries (subset=pid)", r.ProcEntries, 3},
				{"/sys", r.SysExists, false},
				{"open fds", fmt.Sprint(r.OpenFDs), "[0 1 2]"},
				{"NOFILE", r.Rlimits["NOFILE"], [2]uint64{nofile, nofile}},
				// 1 stops core files and |helpers alike (spec.go).
				{"CORE", r.Rlimits["CORE"], [2]uint64{1, 1}},
				{"FSIZE", r.Rlimits["FSIZE"], [2]uint64{1 << 20, 1 << 20}},
				{"stdin", r.StdinLen, 5},
				// runc adds HOME=/ when the spec has no HOME.
				{"env", fmt.Sprint(r.Env), fmt.Sprint(append(s.Env, "HOME=/"))},
				{"args", fmt.Sprint(r.Args), "[/cell/probe]"},
				{"/dev/null", r.DevNullWrite, ""},
				{"setuid(0)", r.Setuid0, "EPERM"},
				{"chroot", r.ChrootEscape, "EPERM"},
				{"cgroup2 (cgroup ns)", strings.Contains(r.CgroupFile, "0::/\n"), true},
			}
			for _, c := range checks {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
				}
			}
			if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "lo" || !r.Interfaces[0].Up {
				t.Errorf("interfaces: got %+v, want lo only, up", r.Interfaces)
			}
			if r.TmpFill != "ENOSPC" && r.TmpFill != "EFBIG" {
				t.Errorf("/tmp fill: got %q, want ENOSPC or EFBIG", r.TmpFill)
			}
			// Every mount of the cell's view.
			for _, line := range strings.Split(strings.TrimSpace(r.MountInfo), "\n") {
				f := strings.Fields(line)
				if len(f) < 6 {
					continue
				}
				mp, opts := f[4], strings.Split(f[5], ",")
				want := map[string][]string{
					"/":           {"ro"},
					"/cell/probe": {"ro", "nosuid", "nodev", "noatime"},
					"/tmp":        {"rw", "nosuid", "nodev", "noexec"},
					"/dev":        {"ro", "nosuid", "nodev", "noexec"},
					"/dev/null":   {"nosuid", "noexec"},
					"/proc":       {"nosuid", "nodev", "noexec"},
				}[mp]
				if want == nil {
					t.Errorf("unexpected mount %s (%s)", mp, line)
				}
				for _, o := range want {
					if !slices.Contains(opts, o) {
						t.Errorf("mount %s: options %v lack %s", mp, opts, o)
					}
				}
			}
		})
	}
}

// TestMinimal declares nothing optional: / holds /cell only.
func TestMinimal(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			r := runProbe(t, m, probeSpec("tcc-min"))
			checks := []struct {
				name      string
				got, want any
			}{
				{"root", strings.Join(r.Root, " "), "cell"},
				{"dev", r.Dev == nil, true},
				{"write /tmp", r.WriteTmp, "ENOENT"},
				{"/dev/null", r.DevNullWrite, "ENOENT"},
				{"/proc", r.ProcEntries, 0},
				{"kill(host pid)", r.HostPidVisible, "ESRCH"},
				{"FSIZE", r.Rlimits["FSIZE"], [2]uint64{0, 0}},
				{"open fds", fmt.Sprint(r.OpenFDs), "[0 1 2]"},
				{"pid", r.Pid, 1},
			}
			for _, c := range checks {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

// TestDataFiles checks that non-Exec files are readable but not
// executable, and that nested paths work, however deep.
func TestDataFiles(t *testing.T) {
	m := newManager(t, true)
	dir := rootOnlyDir(t)
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("#!/cell/probe\nhello\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("d/", 40) + "x.txt"
	s := probeSpec("tcc-data")
	s.Files = append(s.Files, File{Path: "data.txt", Source: openFile(t, data)}, File{Path: deep, Source: openFile(t, data)})
	r := runProbe(t, m, s)
	if r.DataFile != "#!/cell/probe\nhello\n" {
		t.Errorf("data file: got %q", r.DataFile)
	}
	if r.DataFileExecPerm != "EACCES" {
		t.Errorf("exec of a data file: got %q, want EACCES (noexec)", r.DataFileExecPerm)
	}
}

// TestReplacedSource replaces a file on the host after it was opened (in
// the daemon: opened and hashed by the gate). The sandbox binds the open
// file, never what the path names now; the kernel refuses to bind a file
// that is no longer linked anywhere, so Prepare fails, and its clean-up is
// reported.
func TestReplacedSource(t *testing.T) {
	m := newManager(t, true)
	dir := rootOnlyDir(t)
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("#!/cell/probe\nhello\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	opened := openFile(t, data)
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("#!/cell/probe\nswapped\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, data); err != nil {
		t.Fatal(err)
	}
	s := probeSpec("tcc-swap")
	s.Files = append(s.Files, File{Path: "data.txt", Source: opened})
	sb, err := m.Prepare(context.Background(), s)
	if err == nil {
		checkWipe(t, sb)
		t.Fatal("Prepare bound a file whose path names another file by now")
	}
	var se *Error
	if !errors.As(err, &se) || se.Wipe == nil || !se.Wipe.Clean() || len(se.Wipe.Removed) == 0 {
		t.Errorf("Prepare: %v; want an *Error carrying a clean wipe report of what it had made", err)
	}
	checkNothingLeft(t, m)
}

// rootOnlyDir is a 0700 directory like the daemon's blob store.
func rootOnlyDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExit(t *testing.T) {
	m := newManager(t, true)
	tests := []struct {
		args []string
		want Exit
	}{
		{[]string{"exit", "0"}, Exit{Code: 0}},
		{[]string{"exit", "3"}, Exit{Code: 3}},
		{[]string{"exit", "255"}, Exit{Code: 255}},
	}
	for i, tt := range tests {
		exit, _, _ := runSpec(t, m, probeSpec(fmt.Sprintf("tcc-exit-%d", i), tt.args...))
		if exit != tt.want {
			t.Errorf("%v: got %v, want %v", tt.args, exit, tt.want)
		}
	}
}

func TestProgressFD(t *testing.T) {
	m := newManager(t, true)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := probeSpec("tcc-progress", "progress")
	s.Progress = w
	exit, out, errOut := runSpec(t, m, s)
	w.Close()
	if exit != (Exit{}) {
		t.Fatalf("exit %v: %s", exit, errOut)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"progress":0.5,"message":"half"}` + "\n"; line != want {
		t.Errorf("fd 3: got %q, want %q", line, want)
	}
	if want := `{"ok":true}` + "\n"; string(out) != want {
		t.Errorf("stdout: got %q, want %q", out, want)
	}
}

func TestMemoryLimit(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			s := probeSpec("tcc-memhog", "memhog")
			s.Memory = 32 << 20
			sb, err := m.Prepare(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer checkWipe(t, sb)
			if err := sb.Launch(); err != nil {
				t.Fatal(err)
			}
			exit, err := sb.Wait(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if exit.Signal != syscall.SIGKILL {
				t.Errorf("exit: got %v, want killed by SIGKILL", exit)
			}
			st, err := sb.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.OOMKills < 1 {
				t.Errorf("OOMKills: got %d, want >= 1", st.OOMKills)
			}
			if st.MemoryPeak < 16<<20 || st.MemoryPeak > 40<<20 {
				t.Errorf("MemoryPeak: got %d, want about 32 MiB", st.MemoryPeak)
			}
		})
	}
}

func TestPidsLimit(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			s := probeSpec("tcc-forkbomb", "forkbomb")
			s.Pids = 16
			sb, err := m.Prepare(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer checkWipe(t, sb)
			if err := sb.Launch(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			exit, _ := sb.Wait(ctx)
			st, err := sb.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.PidsLimitHits < 1 {
				t.Errorf("PidsLimitHits: got %d, want >= 1 (exit %v)", st.PidsLimitHits, exit)
			}
		})
	}
}

func TestKill(t *testing.T) {
	m := newManager(t, true)
	t.Run("Kill", func(t *testing.T) {
		sb, err := m.Prepare(context.Background(), probeSpec("tcc-spin", "spin"))
		if err != nil {
			t.Fatal(err)
		}
		defer checkWipe(t, sb)
		if err := sb.Launch(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := sb.Kill(); err != nil {
			t.Fatal(err)
		}
		exit, err := sb.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if exit.Signal != syscall.SIGKILL {
			t.Errorf("got %v, want killed by SIGKILL", exit)
		}
		st, err := sb.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.CPUTime < 10*time.Millisecond {
			t.Errorf("CPUTime: got %v, want the spin's", st.CPUTime)
		}
	})
	t.Run("WaitContext", func(t *testing.T) {
		sb, err := m.Prepare(context.Background(), probeSpec("tcc-sleep", "sleep"))
		if err != nil {
			t.Fatal(err)
		}
		defer checkWipe(t, sb)
		if err := sb.Launch(); err != nil {
			t.Fatal(err)
		}
		// ctx bounds the wait, not the cell: it runs on until killed.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := sb.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err: got %v, want DeadlineExceeded", err)
		}
		if err := unix.Kill(sb.Pid(), 0); err != nil {
			t.Errorf("the cell is gone after a Wait that timed out: %v", err)
		}
		if err := sb.Kill(); err != nil {
			t.Fatal(err)
		}
		if exit, err := sb.Wait(context.Background()); err != nil || exit.Signal != syscall.SIGKILL {
			t.Errorf("after Kill: %v, %v; want killed by SIGKILL", exit, err)
		}
	})
	t.Run("BeforeLaunch", func(t *testing.T) {
		sb, err := m.Prepare(context.Background(), probeSpec("tcc-unlaunched"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := sb.Launch(); !errors.Is(err, ErrState) {
			t.Errorf("Launch after Kill: got %v, want ErrState", err)
		}
		checkWipe(t, sb)
	})
}

// TestCgroups checks the sandbox's cgroup in every hierarchy, its cgroup2
// id, and that the cell's process is really in it.
func TestCgroups(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			s := probeSpec("tcc-cg", "sleep")
			s.CPU = 0.5
			sb, err := m.Prepare(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer checkWipe(t, sb)
			checkCgroups(t, m, sb)
			if err := sb.Launch(); err != nil {
				t.Fatal(err)
			}
			checkCgroups(t, m, sb)
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", sb.Pid()))
			if err != nil || strings.TrimSpace(string(b)) != "1000" {
				t.Errorf("oom_score_adj: got %q (%v), want 1000", b, err)
			}

			// Limits.
			if m.unified {
				return
			}
			for _, c := range []struct{ dir, file, want string }{
				{"memory", "memory.limit_in_bytes", fmt.Sprint(s.Memory)},
				{"memory", "memory.memsw.limit_in_bytes", fmt.Sprint(s.Memory)},
				{"pids", "pids.max", fmt.Sprint(s.Pids)},
				{"cpu", "cpu.cfs_quota_us", "50000"},
				{"cpu", "cpu.cfs_period_us", "100000"},
			} {
				b, err = os.ReadFile(filepath.Join(sb.paths[c.dir], c.file))
				if err != nil {
					t.Error(err)
					continue
				}
				if got := strings.TrimSpace(string(b)); got != c.want {
					t.Errorf("%s: got %s, want %s", c.file, got, c.want)
				}
			}
			if err := sb.SetCPU(0.1); err != nil {
				t.Fatal(err)
			}
			b, _ = os.ReadFile(filepath.Join(sb.paths["cpu"], "cpu.cfs_quota_us"))
			if got := strings.TrimSpace(string(b)); got != "10000" {
				t.Errorf("after SetCPU(0.1): quota %s, want 10000", got)
			}
			if err := sb.SetCPU(2); !errors.Is(err, ErrState) {
				t.Errorf("SetCPU above contract: got %v, want ErrState", err)
			}
			if err := sb.SetCPU(0.5); err != nil {
				t.Errorf("SetCPU back to contract: %v", err)
			}
		})
	}
}

func checkCgroups(t *testing.T, m *Manager, sb *Sandbox) {
	t.Helper()
	rel := filepath.Join(m.cfg.CgroupParent, sb.ID())
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		dir := filepath.Join(h, rel)
		pids, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Errorf("hierarchy %s: %v", h, err)
			continue
		}
		if !slices.Contains(strings.Fields(string(pids)), strconv.Itoa(sb.Pid())) {
			t.Errorf("%s: pid %d not in cgroup.procs (%q)", dir, sb.Pid(), pids)
		}
	}
	if m.cg2Mount == "" {
		return
	}
	dir := filepath.Join(m.cg2Mount, rel)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if sb.CgroupID() != st.Ino || st.Ino == 0 {
		t.Errorf("CgroupID: got %d, want inode %d of %s", sb.CgroupID(), st.Ino, dir)
	}
	got, err := cgroup2PathOf(sb.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if got != rel {
		t.Errorf("/proc/%d/cgroup: 0::%s, want 0::%s", sb.Pid(), got, rel)
	}
}

// TestConcurrent runs two sandboxes at once: distinct host uids.
func TestConcurrent(t *testing.T) {
	m := newManager(t, true)
	a, err := m.Prepare(context.Background(), probeSpec("tcc-a", "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	defer checkWipe(t, a)
	b, err := m.Prepare(context.Background(), probeSpec("tcc-b", "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	defer checkWipe(t, b)
	if a.HostUID() == b.HostUID() {
		t.Errorf("two live sandboxes share host uid %d", a.HostUID())
	}
	for _, sb := range []*Sandbox{a, b} {
		if err := sb.Launch(); err != nil {
			t.Fatal(err)
		}
		// The cell's uid as the host sees it.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sb.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", sb.HostUID(), sb.HostUID(), sb.HostUID(), sb.HostUID())
		if !strings.Contains(string(st), want) {
			t.Errorf("sandbox %s: /proc/%d/status lacks %q", sb.ID(), sb.Pid(), want)
		}
	}
	if _, err := m.Prepare(context.Background(), probeSpec("tcc-a")); !errors.Is(err, ErrExists) {
		t.Errorf("second Prepare of a live ID: got %v, want ErrExists", err)
	}
}

// TestParallel prepares and runs sandboxes from several goroutines at
// once: each sees only its own streams and no stray descriptor.
func TestParallel(t *testing.T) {
	m := newManager(t, true)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- runParallel(m, i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	checkNothingLeft(t, m)
}

func runParallel(m *Manager, i int) (err error) {
	var out, errOut bytes.Buffer
	s := probeSpec(fmt.Sprintf("tcc-par-%d", i))
	s.Env = append(s.Env, fmt.Sprintf("N=%d", i))
	s.Stdout, s.Stderr = &out, &errOut
	sb, err := m.Prepare(context.Background(), s)
	if err != nil {
		return err
	}
	defer func() {
		if r := sb.Destroy(); !r.Clean() && err == nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	if err := sb.Launch(); err != nil {
		return err
	}
	if _, err := sb.Wait(context.Background()); err != nil {
		return err
	}
	var r probeReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return fmt.Errorf("sandbox %d: %v: %s %s", i, err, out.Bytes(), errOut.Bytes())
	}
	if want := fmt.Sprintf("N=%d", i); !slices.Contains(r.Env, want) || fmt.Sprint(r.OpenFDs) != "[0 1 2]" {
		return fmt.Errorf("sandbox %d: env %v, fds %v", i, r.Env, r.OpenFDs)
	}
	return nil
}

// TestDestroy checks the wipe independently of Destroy's own check.
func TestDestroy(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			s := probeSpec("tcc-wipe", "sleep")
			s.Proc, s.Tmp, s.Devices = true, 1<<20, []string{"null", "zero", "urandom"}
			sb, err := m.Prepare(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if err := sb.Launch(); err != nil {
				t.Fatal(err)
			}
			pid := sb.Pid()
			r := sb.Destroy()
			if !r.Clean() {
				t.Fatalf("Destroy: %v", r)
			}
			if r2 := sb.Destroy(); r2.ID != r.ID || !r2.Clean() {
				t.Errorf("second Destroy: %v", r2)
			}
			checkNothingLeft(t, m, pid)
		})
	}
}

func checkNothingLeft(t *testing.T, m *Manager, pids ...int) {
	t.Helper()
	hs, _ := hierarchies()
	for _, h := range hs {
		ents, _ := os.ReadDir(filepath.Join(h, m.cfg.CgroupParent))
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup left: %s", filepath.Join(h, m.cfg.CgroupParent, e.Name()))
			}
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mi, []byte(m.cfg.Root)) {
		t.Errorf("mount left under %s", m.cfg.Root)
	}
	for _, d := range []string{m.stateDir, m.rootfsDir} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			t.Errorf("left in %s: %s", d, e.Name())
		}
	}
	for _, p := range pids {
		if err := unix.Kill(p, 0); err == nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if bytes.Contains(b, []byte("probe")) || bytes.Contains(b, []byte("init")) {
				t.Errorf("process %d left: %q", p, b)
			}
		}
	}
	if c := childPids(t); len(c) > 0 {
		t.Errorf("child processes left: %v", c)
	}
}

// TestSweep orphans a sandbox (its Manager is dropped without Destroy, as
// when the daemon crashes) and sweeps it with a new Manager.
func TestSweep(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m1 := newManager(t, mode.userNS)
			s := probeSpec("tcc-orphan", "sleep")
			s.Proc, s.Tmp, s.Devices = true, 1<<20, []string{"null"}
			sb, err := m1.Prepare(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if err := sb.Launch(); err != nil {
				t.Fatal(err)
			}
			parked, err := m1.Prepare(context.Background(), probeSpec("tcc-orphan-parked"))
			if err != nil {
				t.Fatal(err)
			}
			pids := []int{sb.Pid(), parked.Pid()}

			m1.lock.Close() // as the crash of its daemon would
			m2, err := New(m1.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.lock.Close()
			if _, err := m2.Prepare(context.Background(), probeSpec("tcc-orphan")); !errors.Is(err, ErrExists) {
				t.Errorf("Prepare over leftovers: got %v, want ErrExists", err)
			}
			removed, err := m2.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(removed, "\n")
			for _, want := range []string{
				fmt.Sprintf("process %d", sb.Pid()),
				fmt.Sprintf("process %d", parked.Pid()),
				"cgroup " + filepath.Join(m2.cg2Mount, m1.cfg.CgroupParent, "tcc-orphan"),
				"mount " + filepath.Join(m2.rootfsDir, "tcc-orphan"),
				"rootfs " + filepath.Join(m2.rootfsDir, "tcc-orphan-parked"),
				"state " + filepath.Join(m2.stateDir, "tcc-orphan"),
			} {
				if !strings.Contains(all, want) {
					t.Errorf("Sweep did not report %q; reported:\n%s", want, all)
				}
			}
			// The orphans' reapers (in this process) collect the killed inits.
			for _, o := range []*Sandbox{sb, parked} {
				select {
				case <-o.done:
				case <-time.After(5 * time.Second):
					t.Errorf("orphan %s not dead", o.ID())
				}
			}
			checkNothingLeft(t, m2, pids...)
			// And the ID is usable again.
			exit, _, _ := runSpec(t, m2, probeSpec("tcc-orphan", "exit", "0"))
			if exit != (Exit{}) {
				t.Errorf("after Sweep: %v", exit)
			}
		})
	}
}

// TestInitHook checks that a failing Init hook stops the sandbox's start
// and leaves nothing.
func TestInitHook(t *testing.T) {
	m := newManager(t, true)
	if err := os.WriteFile(hookFlag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hookFlag)
	var stderr bytes.Buffer
	s := probeSpec("tcc-hook")
	s.Stderr = &stderr
	_, err := m.Prepare(context.Background(), s)
	t.Logf("Prepare: %v", err)
	if err == nil || !strings.Contains(stderr.String(), "test hook refused") {
		t.Errorf("got %v (stderr %q), want a failed Prepare and the hook's message", err, stderr.String())
	}
	// The clean-up of what Prepare had made is checked and reported.
	var se *Error
	if !errors.As(err, &se) || se.Wipe == nil || !se.Wipe.Clean() || !slices.ContainsFunc(se.Wipe.Removed, func(r string) bool { return strings.HasPrefix(r, "rootfs ") }) {
		t.Errorf("Prepare: %v; want an *Error with a clean wipe report", err)
	}
	checkNothingLeft(t, m)
}

// TestHostChecks: New refuses sandbox host ids that /etc/subuid or
// /etc/subgid give to a user, and a core_pattern that sends core dumps to
// a socket (which ignores the cells' RLIMIT_CORE).
func TestHostChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	defer func(f []string, c string) { subIDFiles, corePatternFile = f, c }(subIDFiles, corePatternFile)
	tests := []struct {
		name         string
		subuid, core string
		wantErr      string
	}{
		{"usual ranges", "alice:100000:65536\nbob:165536:65536\n", "core\n", ""},
		{"pipe to a helper", "", "|/usr/lib/systemd/systemd-coredump %P %u\n", ""},
		{"overlapping subuid", "# comment\nalice:100000:65536\nsys:1073000000:2000000\n", "core\n", "line 3 gives sys the host ids 1073000000-1074999999"},
		{"socket", "", "@/run/systemd/coredump\n", "sends core dumps to a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subIDFiles = []string{write("subuid", tt.subuid)}
			corePatternFile = write("core_pattern", tt.core)
			_, err := checkHost(Config{IDBase: defaultIDBase, MaxSandboxes: defaultMax})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestFeatures(t *testing.T) {
	m := newManager(t, true)
	f := m.Features()
	t.Logf("%+v", f)
	want := "hybrid"
	if m.unified {
		want = "v2"
	}
	if f.Cgroups != want || !f.UserNS {
		t.Errorf("got %+v, want Cgroups %s and UserNS", f, want)
	}
	if f.ExeSeal != "overlayfs" && f.ExeSeal != "memfd" && f.ExeSeal != "self" {
		t.Errorf("ExeSeal: got %q", f.ExeSeal)
	}
}

func TestSpecErrors(t *testing.T) {
	m := newManager(t, true)
	dir := rootOnlyDir(t)
	private := filepath.Join(dir, "private")
	if err := os.WriteFile(private, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	privateFile, dirFile := openFile(t, private), openFile(t, dir)
	tests := []struct {
		field string
		edit  func(*Spec)
	}{
		{"ID", func(s *Spec) { s.ID = "a/b" }},
		{"ID", func(s *Spec) { s.ID = "" }},
		{"Seccomp", func(s *Spec) { s.Seccomp = nil }},
		{"Memory", func(s *Spec) { s.Memory = 0 }},
		{"Pids", func(s *Spec) { s.Pids = 0 }},
		{"CPU", func(s *Spec) { s.CPU = -1 }},
		{"Tmp", func(s *Spec) { s.Tmp = -1 }},
		{"Entrypoint", func(s *Spec) { s.Entrypoint = "nope" }},
		{"Files[0].Exec", func(s *Spec) { s.Files[0].Exec = false }},
		{"Files[1].Path", func(s *Spec) { s.Files = append(s.Files, File{Path: "../x", Source: probeFile}) }},
		{"Files[1].Path", func(s *Spec) { s.Files = append(s.Files, File{Path: "/abs", Source: probeFile}) }},
		{"Files[1].Path", func(s *Spec) { s.Files = append(s.Files, File{Path: "probe", Source: probeFile}) }},
		{"Files", func(s *Spec) { s.Files = append(s.Files, File{Path: "probe/x", Source: probeFile}) }},
		{"Files[1].Source", func(s *Spec) { s.Files = append(s.Files, File{Path: "p", Source: privateFile}) }},
		{"Files[1].Source", func(s *Spec) { s.Files = append(s.Files, File{Path: "d", Source: dirFile}) }},
		{"Files[1].Source", func(s *Spec) { s.Files = append(s.Files, File{Path: "n"}) }},
		{"Devices[0]", func(s *Spec) { s.Devices = []string{"sda"} }},
		{"Devices[1]", func(s *Spec) { s.Devices = []string{"null", "null"} }},
		{"Env[0]", func(s *Spec) { s.Env = []string{"NOEQUALS"} }},
	}
	for _, tt := range tests {
		s := probeSpec("tcc-bad")
		tt.edit(&s)
		_, err := m.Prepare(context.Background(), s)
		var se *SpecError
		if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: got %v, want a *SpecError", tt.field, err)
			continue
		}
		if se.Field != tt.field {
			t.Errorf("got field %s (%v), want %s", se.Field, err, tt.field)
		}
	}
}

// TestCycles runs many back-to-back sandboxes and checks that nothing
// accumulates: fds, mounts, cgroups, processes, goroutines' threads.
func TestCycles(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			m := newManager(t, mode.userNS)
			// Warm up: the first sandbox opens lazily cached files.
			runSpec(t, m, probeSpec("tcc-warm", "exit", "0"))
			fds := openFDs(t)
			mounts := countMounts(t)
			goroutines := runtime.NumGoroutine()
			for i := range n {
				s := probeSpec(fmt.Sprintf("tcc-cycle-%d", i), "exit", "0")
				if i%2 == 0 {
					s.Proc, s.Tmp, s.Devices = true, 1<<20, []string{"null"}
				}
				exit, _, errOut := runSpec(t, m, s)
				if exit != (Exit{}) {
					t.Fatalf("cycle %d: %v: %s", i, exit, errOut)
				}
			}
			// Fewer is fine (something opened lazily before may have
			// closed since); any new one is a leak.
			for fd, target := range openFDs(t) {
				if fds[fd] != target {
					t.Errorf("fd %d -> %s opened during %d cycles and still open", fd, target, n)
				}
			}
			if got := countMounts(t); got != mounts {
				t.Errorf("mounts: %d before, %d after %d cycles", mounts, got, n)
			}
			// Goroutines of the last cycle may take a moment to end.
			for range 100 {
				if runtime.NumGoroutine() <= goroutines {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := runtime.NumGoroutine(); got > goroutines {
				t.Errorf("goroutines: %d before, %d after %d cycles", goroutines, got, n)
			}
			checkNothingLeft(t, m)
		})
	}
}

func countMounts(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestParentLocked starts a second Manager on a live one's cgroup parent:
// its Sweep would take the first one's sandboxes for orphans, so New must
// refuse, and accept once the first is gone.
func TestParentLocked(t *testing.T) {
	m := newManager(t, true)
	if _, err := New(m.cfg); !errors.Is(err, ErrParentInUse) || !strings.Contains(err.Error(), m.cfg.CgroupParent) {
		t.Fatalf("second New on %s: got %v, want ErrParentInUse naming the parent", m.cfg.CgroupParent, err)
	}
	m.lock.Close() // as the exit of its daemon would
	m2, err := New(m.cfg)
	if err != nil {
		t.Fatalf("New after the first Manager is gone: %v", err)
	}
	m2.lock.Close()
}
