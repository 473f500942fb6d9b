// Command probe is the test cell of kernel/sandbox. It runs inside a
// sandbox and reports what it can see and do as one JSON object on stdout,
// or, given a mode argument, misbehaves in one bounded way (memory hog,
// fork bomb, busy loop) so that the tests can check the limits.
//
// Every mode refuses to run unless the probe is PID 1, which only the
// first process of a fresh pid namespace can be: on the host, PID 1 is
// the host's init. The one exception is "child", the fork bomb's children,
// which only sleep. The report mode only reads and probes; the adversarial
// modes are bounded (the memory hog stops at 4 GiB, the fork bomb at 10000
// children, the busy loop at 10 minutes) so that an escaped probe does no
// lasting harm.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Report is what the default mode prints.
type Report struct {
	Pid, Ppid        int
	UID, GID         int
	EUID, EGID       int
	Groups           []int
	Hostname         string
	CapEff, CapPrm   uint64
	CapInh, CapBnd   uint64
	CapAmb           uint64
	NoNewPrivs       int
	Seccomp          int
	Interfaces       []Iface
	Root             []string // names in /
	Dev              []string // names in /dev, nil if absent
	WriteRoot        string   // errno of creating /x ("" means it worked)
	WriteCell        string   // errno of creating /cell/x
	WriteTmp         string   // errno of creating /tmp/x
	TmpFill          string   // errno once /tmp is full (or FSIZE hit)
	TmpFilled        int64    // bytes written before that
	TmpSize          int64    // statfs size of /tmp
	HostPidVisible   string   // errno of kill(HOSTPID, 0)
	ProcPids         []int    // numeric entries of /proc, if mounted
	ProcEntries      int      // all entries of /proc, if mounted
	OpenFDs          []int    // fds 0..255 open at start
	Rlimits          map[string][2]uint64
	StdinLen         int
	DevNullWrite     string // errno of writing /dev/null ("" = ok, absent if no /dev/null)
	ExecTmp          string // errno of executing a copy of ourselves from /tmp
	CgroupFile       string // /proc/self/cgroup, if proc
	MountInfo        string // /proc/self/mountinfo, if proc
	SysExists        bool
	Mkdir            string   // errno of mkdir /cell/d
	ChrootEscape     string   // errno of chroot(".")
	Setuid0          string   // errno of setuid(0)
	DataFile         string   // content of /cell/data.txt, if present
	DataFileExecPerm string   // errno of execve on /cell/data.txt
	Env              []string // the whole environment
	Args             []string
}

// Iface is one network interface.
type Iface struct {
	Name  string
	Up    bool
	Addrs []string
}

func errnoOf(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	// The fork bomb's children only sleep: they are the one harmless mode
	// that runs below PID 1.
	if mode == "child" {
		time.Sleep(10 * time.Minute)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "probe: refusing to run: not PID 1 of a fresh pid namespace")
		os.Exit(99)
	}
	switch mode {
	case "":
		report()
	case "exit":
		code, _ := strconv.Atoi(os.Args[2])
		os.Exit(code)
	case "memhog":
		memhog()
	case "forkbomb":
		forkbomb()
	case "spin":
		spin()
	case "sleep":
		time.Sleep(10 * time.Minute)
	case "progress":
		f := os.NewFile(3, "progress")
		fmt.Fprintln(f, `{"progress":0.5,"message":"half"}`)
		fmt.Println(`{"ok":true}`)
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown mode", mode)
		os.Exit(2)
	}
}

func report() {
	var r Report
	// Open fds first, before the Go runtime or we open anything else.
	for fd := 0; fd < 256; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			r.OpenFDs = append(r.OpenFDs, fd)
		}
	}
	r.Pid, r.Ppid = os.Getpid(), os.Getppid()
	r.Env, r.Args = os.Environ(), os.Args
	r.UID, r.GID, r.EUID, r.EGID = os.Getuid(), os.Getgid(), os.Geteuid(), os.Getegid()
	r.Groups, _ = os.Getgroups()
	r.Hostname, _ = os.Hostname()

	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		r.CapEff = uint64(data[0].Effective) | uint64(data[1].Effective)<<32
		r.CapPrm = uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
		r.CapInh = uint64(data[0].Inheritable) | uint64(data[1].Inheritable)<<32
	}
	for c := 0; c < 64; c++ {
		v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			break
		}
		if v == 1 {
			r.CapBnd |= 1 << c
		}
		a, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, uintptr(c), 0, 0)
		if err == nil && a == 1 {
			r.CapAmb |= 1 << c
		}
	}
	r.NoNewPrivs, _ = unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	r.Seccomp, _ = unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)

	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		it := Iface{Name: i.Name, Up: i.Flags&net.FlagUp != 0}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			it.Addrs = append(it.Addrs, a.String())
		}
		r.Interfaces = append(r.Interfaces, it)
	}

	r.Root = names("/")
	r.Dev = names("/dev")
	r.WriteRoot = errnoOf(create("/x"))
	r.WriteCell = errnoOf(create("/cell/x"))
	r.Mkdir = errnoOf(os.Mkdir("/cell/d", 0o755))
	r.WriteTmp = errnoOf(create("/tmp/x"))
	if r.WriteTmp == "" {
		var st unix.Statfs_t
		if unix.Statfs("/tmp", &st) == nil {
			r.TmpSize = int64(st.Blocks) * st.Bsize
		}
		r.TmpFilled, r.TmpFill = fill("/tmp/fill")
		os.Remove("/tmp/fill")
		r.ExecTmp = errnoOf(execCopy())
	}
	if pid, err := strconv.Atoi(os.Getenv("HOSTPID")); err == nil {
		r.HostPidVisible = errnoOf(unix.Kill(pid, 0))
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		r.ProcEntries = len(ents)
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				r.ProcPids = append(r.ProcPids, n)
			}
		}
		b, _ := os.ReadFile("/proc/self/cgroup")
		r.CgroupFile = string(b)
		b, _ = os.ReadFile("/proc/self/mountinfo")
		r.MountInfo = string(b)
	}
	r.Rlimits = map[string][2]uint64{}
	for name, res := range map[string]int{"NOFILE": unix.RLIMIT_NOFILE, "NPROC": unix.RLIMIT_NPROC, "CORE": unix.RLIMIT_CORE, "FSIZE": unix.RLIMIT_FSIZE, "MEMLOCK": unix.RLIMIT_MEMLOCK} {
		var rl unix.Rlimit
		if unix.Getrlimit(res, &rl) == nil {
			r.Rlimits[name] = [2]uint64{rl.Cur, rl.Max}
		}
	}
	if b, err := io.ReadAll(os.Stdin); err == nil {
		r.StdinLen = len(b)
	}
	if f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0); err == nil {
		_, err = f.Write([]byte("x"))
		r.DevNullWrite = errnoOf(err)
		f.Close()
	} else {
		r.DevNullWrite = errnoOf(err)
	}
	_, err := os.Stat("/sys")
	r.SysExists = err == nil
	r.ChrootEscape = errnoOf(unix.Chroot("."))
	r.Setuid0 = errnoOf(setuid0())
	if b, err := os.ReadFile("/cell/data.txt"); err == nil {
		r.DataFile = string(b)
		r.DataFileExecPerm = errnoOf(unix.Exec("/cell/data.txt", []string{"data"}, nil))
	}
	json.NewEncoder(os.Stdout).Encode(&r)
}

// setuid0 calls setuid(0) on this thread only (raw syscall): the probe only
// wants the errno.
func setuid0() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func names(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

func create(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(path)
}

func fill(path string) (int64, string) {
	f, err := os.Create(path)
	if err != nil {
		return 0, errnoOf(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for n < 1<<30 {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n, errnoOf(err)
		}
	}
	return n, "no limit"
}

// execCopy copies the probe into /tmp and tries to run it: /tmp is noexec.
func execCopy() error {
	b, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		b, err = os.ReadFile(os.Args[0])
		if err != nil {
			return err
		}
	}
	if err := os.WriteFile("/tmp/p", b[:min(len(b), 1<<20)], 0o755); err != nil {
		return err
	}
	defer os.Remove("/tmp/p")
	return exec.Command("/tmp/p", "exit", "0").Run()
}

// memhog touches memory until the cgroup's OOM killer stops it.
func memhog() {
	var keep [][]byte
	for i := 0; i < 4096; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
	}
	fmt.Println("memhog: not killed after 4 GiB")
	os.Exit(3)
}

// forkbomb starts sleeping children of itself until the pids limit
// refuses; it exits 0 if a fork failed, 3 if it never did.
func forkbomb() {
	for i := 0; i < 10000; i++ {
		cmd := exec.Command(os.Args[0], "child")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr // no /dev/null needed
		if err := cmd.Start(); err != nil {
			fmt.Printf("forkbomb: fork %d failed: %v\n", i, err)
			os.Exit(0)
		}
	}
	fmt.Println("forkbomb: no limit after 10000 children")
	os.Exit(3)
}

// spin burns CPU for at most ten minutes.
func spin() {
	end := time.Now().Add(10 * time.Minute)
	fmt.Println("spinning")
	for time.Now().Before(end) {
	}
	os.Exit(3)
}
