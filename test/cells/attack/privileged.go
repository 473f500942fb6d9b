package attack

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

func init() {
	register("mount", "the cell cannot mount anything, not even a tmpfs on its own /tmp, nor open a new-API fs context (no CAP_SYS_ADMIN)", mount)
	register("ptrace", "the cell cannot trace any process outside its own tree (seccomp; pid namespace)", ptrace)
	register("unshare", "the cell cannot create namespaces, by unshare(2) or by clone(2) flags (seccomp; no CAP_SYS_ADMIN)", unshareAttack)
	register("setns", "the cell cannot enter a namespace, not even its own (seccomp; no CAP_SYS_ADMIN)", setns)
	register("setuid0", "the cell cannot become uid 0 or gid 0 (no CAP_SETUID/CAP_SETGID)", setuid0)
	register("bpf", "the cell cannot create BPF maps or load BPF programs (seccomp; no CAP_BPF; unprivileged BPF off)", bpf)
	register("raw-socket", "the cell cannot open raw or packet sockets (no CAP_NET_RAW)", rawSocket)
	register("keyctl", "the cell cannot reach kernel keyrings (seccomp)", keyctlAttack)
	register("reboot", "the cell cannot reboot (no CAP_SYS_BOOT; probed with invalid magic)", reboot)
	register("chroot", "the cell cannot chroot or pivot_root (no CAP_SYS_CHROOT/CAP_SYS_ADMIN; probed harmlessly)", chroot)
}

// fsopen has the same number on every architecture (new syscalls share
// numbers since 5.1).
const sysFsopen = 430

// mount first probes mount(2) with MS_MOVE of a path that does not exist:
// the kernel checks CAP_SYS_ADMIN (EPERM) before it looks the source up
// (ENOENT), so the call can never move anything. Then it tries a real tmpfs
// on a directory it creates under /tmp, and unmounts it at once if that
// worked. Last, fsopen(2) of the new mount API.
func mount(in Input) (Result, error) {
	var r Result
	err := syscall.Mount("/tcc-hostile-absent", "/", "", syscall.MS_MOVE, "")
	p := probe("mount MS_MOVE absent onto /", err)
	if err == syscall.ENOENT {
		p.Allowed, p.Note = true, "passed the capability check (failed only on the absent source)"
	}
	r.Probes = append(r.Probes, p)

	dir, derr := os.MkdirTemp("/tmp", "tcc-hostile-mnt-")
	if derr == nil {
		err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=64k")
		if err == nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		r.Probes = append(r.Probes, probe("mount tmpfs on "+dir, err))
		os.Remove(dir)
	} else {
		r.Probes = append(r.Probes, Probe{Target: "mount tmpfs on /tmp/tcc-hostile-mnt-*", Errno: errnoName(derr), Note: "no writable /tmp: skipped"})
	}

	fsName := []byte("tmpfs\x00")
	fd, _, e := syscall.RawSyscall(sysFsopen, uintptr(unsafe.Pointer(&fsName[0])), 0, 0)
	if e == 0 {
		syscall.Close(int(fd))
	}
	r.Probes = append(r.Probes, probe("fsopen tmpfs", errOrNil(e)))
	summarize(&r)
	return r, nil
}

// ptrace tries PTRACE_SEIZE on every process up to pid 64: in a fresh pid
// namespace there is none but itself (EPERM) and its own helper child,
// which is tried too and reported but does not count. SEIZE has the same
// permission check as PTRACE_ATTACH but does not stop the tracee, so a
// process that could be seized runs on and is released when this one
// exits. Thread ids are skipped: they are not processes.
func ptrace(in Input) (Result, error) {
	child, err := spawn("sleep", nil)
	if err != nil {
		return Result{}, fmt.Errorf("start child: %w", err)
	}
	defer killAll([]int{child})
	children := []int{child}

	var r Result
	for pid := 1; pid <= 64; pid++ {
		c := classify(pid, children)
		if strings.HasPrefix(c.Note, "gone") || strings.Contains(c.Note, "thread") {
			continue
		}
		_, _, e := syscall.RawSyscall6(syscall.SYS_PTRACE, ptraceSeize, uintptr(pid), 0, 0, 0, 0)
		p := probe("pid "+strconv.Itoa(pid), errOrNil(e))
		if c.Note != "foreign process" {
			if p.Allowed {
				p.Note = c.Note + ": inside the sandbox, does not count"
			} else {
				p.Note = c.Note
			}
			p.Allowed = false
		}
		r.Probes = append(r.Probes, p)
	}
	summarize(&r)
	return r, nil
}

const ptraceSeize = 0x4206

var nsFlags = map[string]uintptr{
	"user":   syscall.CLONE_NEWUSER,
	"mnt":    syscall.CLONE_NEWNS,
	"net":    syscall.CLONE_NEWNET,
	"pid":    syscall.CLONE_NEWPID,
	"ipc":    syscall.CLONE_NEWIPC,
	"uts":    syscall.CLONE_NEWUTS,
	"cgroup": syscall.CLONE_NEWCGROUP,
	"time":   0x80, // CLONE_NEWTIME
}

var defaultNS = []string{"user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time", "user+mnt"}

// unshareAttack creates each namespace in a short-lived helper process,
// once with unshare(2) after fork and once with the flag on clone(2): a Go
// process is multi-threaded and could not unshare a user namespace itself.
// The helper only exits; "allowed" means it got the namespace and ran.
func unshareAttack(in Input) (Result, error) {
	names := in.Flags
	if len(names) == 0 {
		names = defaultNS
	}
	method := cmpOr(in.Method, "both")
	if method != "unshare" && method != "clone" && method != "both" {
		return Result{}, fmt.Errorf("input.method %q is not one of unshare, clone, both", method)
	}
	var r Result
	for _, name := range names {
		var flags uintptr
		for _, part := range strings.Split(name, "+") {
			f, ok := nsFlags[part]
			if !ok {
				return Result{}, fmt.Errorf("input.flags: %q is not a namespace (%s, or a+b)", part, strings.Join(slices.Sorted(maps.Keys(nsFlags)), ", "))
			}
			flags |= f
		}
		if method != "clone" {
			r.Probes = append(r.Probes, runInNamespace("unshare("+name+")", &syscall.SysProcAttr{Unshareflags: flags}))
		}
		// clone(2) cannot take CLONE_NEWTIME (Go would switch to clone3).
		if method != "unshare" && flags&nsFlags["time"] == 0 {
			r.Probes = append(r.Probes, runInNamespace("clone("+name+")", &syscall.SysProcAttr{Cloneflags: flags}))
		}
	}
	summarize(&r)
	return r, nil
}

func runInNamespace(target string, attr *syscall.SysProcAttr) Probe {
	pid, err := spawn("exit", attr)
	if err != nil {
		return probe(target, err)
	}
	if how := reap(pid); how != "" {
		return Probe{Target: target, Errno: how, Note: "helper did not exit cleanly"}
	}
	return Probe{Target: target, Allowed: true}
}

// setns opens the cell's own namespace files (needs /proc) and tries to
// enter each. Entering one's own namespace changes nothing, but succeeding
// shows the capability is there.
func setns(in Input) (Result, error) {
	if procSelfPID() == "" {
		return Result{Blocked: true, Errno: "ENOENT", Detail: "no /proc: there is no namespace file to open (declare filesystem.proc to probe setns itself)"}, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r Result
	for _, ns := range []string{"user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time"} {
		path := filepath.Join("/proc/self/ns", ns)
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			r.Probes = append(r.Probes, Probe{Target: path, Errno: errnoName(err), Note: "cannot open"})
			continue
		}
		_, _, e := syscall.RawSyscall(sysSetns, uintptr(fd), 0, 0)
		syscall.Close(fd)
		r.Probes = append(r.Probes, probe("setns "+path, errOrNil(e)))
	}
	summarize(&r)
	return r, nil
}

// setuid0 calls setuid(0) and setgid(0) on one thread (the libc-style
// all-threads wrappers would hide which call failed).
func setuid0(in Input) (Result, error) {
	runtime.LockOSThread()
	// The thread may end up with different ids from the others; do not let
	// it run other goroutines afterwards.
	var r Result
	_, _, e := syscall.RawSyscall(syscall.SYS_SETGID, 0, 0, 0)
	r.Probes = append(r.Probes, probe("setgid(0)", errOrNil(e)))
	_, _, e = syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0)
	p := probe("setuid(0)", errOrNil(e))
	if p.Allowed && os.Getuid() == 0 {
		p.Note = "already uid 0"
	}
	r.Probes = append(r.Probes, p)
	summarize(&r)
	r.Detail += fmt.Sprintf(" (uid %d, gid %d)", os.Getuid(), os.Getgid())
	return r, nil
}

// bpf attributes, laid out as union bpf_attr (zero-padded to 128 bytes).
type bpfProgLoad struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	_           [84]byte
}

type bpfMapCreate struct {
	mapType    uint32
	keySize    uint32
	valueSize  uint32
	maxEntries uint32
	_          [112]byte
}

const (
	bpfMapCreateCmd    = 0
	bpfProgLoadCmd     = 5
	bpfMapTypeArray    = 2
	bpfProgSocketFiltr = 1
	bpfProgTracepoint  = 5
)

// bpf tries an array map, a socket filter (the one program type
// unprivileged BPF allows) and a tracepoint program, each "r0 = 0; exit"
// and never attached; any fd that comes back is closed at once.
func bpf(in Input) (Result, error) {
	var r Result
	m := bpfMapCreate{mapType: bpfMapTypeArray, keySize: 4, valueSize: 4, maxEntries: 1}
	fd, _, e := syscall.Syscall(sysBPF, bpfMapCreateCmd, uintptr(unsafe.Pointer(&m)), unsafe.Sizeof(m))
	if e == 0 {
		syscall.Close(int(fd))
	}
	r.Probes = append(r.Probes, probe("BPF_MAP_CREATE array", errOrNil(e)))

	// mov r0, 0; exit
	insns := [2]uint64{0x00000000000000b7, 0x0000000000000095}
	license := []byte("GPL\x00")
	for _, pt := range []struct {
		name string
		typ  uint32
	}{{"socket_filter", bpfProgSocketFiltr}, {"tracepoint", bpfProgTracepoint}} {
		a := bpfProgLoad{
			progType: pt.typ, insnCnt: 2,
			insns:   uint64(uintptr(unsafe.Pointer(&insns[0]))),
			license: uint64(uintptr(unsafe.Pointer(&license[0]))),
		}
		fd, _, e := syscall.Syscall(sysBPF, bpfProgLoadCmd, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a))
		runtime.KeepAlive(&insns)
		runtime.KeepAlive(license)
		if e == 0 {
			syscall.Close(int(fd))
		}
		r.Probes = append(r.Probes, probe("BPF_PROG_LOAD "+pt.name, errOrNil(e)))
	}
	summarize(&r)
	return r, nil
}

// rawSocket tries the socket types that need CAP_NET_RAW; any socket that
// opens is closed unused.
func rawSocket(in Input) (Result, error) {
	const ethPAll = 0x0300 // htons(ETH_P_ALL)
	var r Result
	for _, s := range []struct {
		name               string
		domain, typ, proto int
	}{
		{"AF_PACKET SOCK_RAW", syscall.AF_PACKET, syscall.SOCK_RAW, ethPAll},
		{"AF_PACKET SOCK_DGRAM", syscall.AF_PACKET, syscall.SOCK_DGRAM, ethPAll},
		{"AF_INET SOCK_RAW icmp", syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP},
		{"AF_INET SOCK_RAW raw", syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW},
		{"AF_INET6 SOCK_RAW icmpv6", syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_ICMPV6},
	} {
		fd, err := syscall.Socket(s.domain, s.typ|syscall.SOCK_CLOEXEC, s.proto)
		if err == nil {
			syscall.Close(fd)
		}
		r.Probes = append(r.Probes, probe(s.name, err))
	}
	summarize(&r)
	return r, nil
}

// Keyring constants from linux/keyctl.h.
const (
	keySpecSessionKeyring = -3
	keySpecUserKeyring    = -4
	keyctlGetKeyringID    = 0
	keyctlDescribe        = 6
	keyctlSearch          = 10
	keyctlInvalidate      = 21
)

func keyctl(cmd int, a2, a3, a4, a5 uintptr) (int, error) {
	v, _, e := syscall.Syscall6(syscall.SYS_KEYCTL, uintptr(cmd), a2, a3, a4, a5, 0)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

func addKey(typ, desc, payload string, ring int) (int, error) {
	t, _ := syscall.BytePtrFromString(typ)
	d, _ := syscall.BytePtrFromString(desc)
	p := []byte(payload)
	v, _, e := syscall.Syscall6(syscall.SYS_ADD_KEY, uintptr(unsafe.Pointer(t)), uintptr(unsafe.Pointer(d)), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(ring), 0)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

// keySearch looks a key up in a keyring and its children (KEYCTL_SEARCH).
func keySearch(typ, desc string, ring int) (int, error) {
	t, _ := syscall.BytePtrFromString(typ)
	d, _ := syscall.BytePtrFromString(desc)
	v, _, e := syscall.Syscall6(syscall.SYS_KEYCTL, keyctlSearch, uintptr(ring), uintptr(unsafe.Pointer(t)), uintptr(unsafe.Pointer(d)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

// keyctlAttack looks up the session and user keyrings (without creating
// them) and describes the session keyring: a cell that can reach keyrings
// at all has escaped the seccomp filter's intent.
func keyctlAttack(in Input) (Result, error) {
	var r Result
	for _, k := range []struct {
		name string
		spec int
	}{{"session keyring", keySpecSessionKeyring}, {"user keyring", keySpecUserKeyring}} {
		id, err := keyctl(keyctlGetKeyringID, uintptr(k.spec), 0, 0, 0)
		p := probe(k.name, err)
		if err == nil {
			buf := make([]byte, 256)
			n, _, e := syscall.Syscall6(syscall.SYS_KEYCTL, keyctlDescribe, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
			if e == 0 && n > 0 {
				p.Note = strings.TrimRight(string(buf[:min(int(n), len(buf))]), "\x00")
			}
		}
		r.Probes = append(r.Probes, p)
	}
	summarize(&r)
	return r, nil
}

// reboot passes invalid magic numbers: the kernel checks CAP_SYS_BOOT
// (EPERM) before the magic (EINVAL), so the call never reboots anything.
// The command is LINUX_REBOOT_CMD_CAD_OFF, the most harmless one.
func reboot(in Input) (Result, error) {
	_, _, e := syscall.RawSyscall6(syscall.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
	p := probe("reboot(bad magic, CAD_OFF)", errOrNil(e))
	if e == syscall.EINVAL {
		p.Allowed, p.Note = true, "passed the capability check (failed only on the magic)"
	}
	r := Result{Probes: []Probe{p}}
	summarize(&r)
	return r, nil
}

// chroot tries chroot("/"), which changes nothing even when allowed, and
// pivot_root of paths that do not exist: pivot_root checks its capability
// (EPERM) before it looks the paths up (ENOENT).
func chroot(in Input) (Result, error) {
	var r Result
	r.Probes = append(r.Probes, probe(`chroot("/")`, syscall.Chroot("/")))
	err := syscall.PivotRoot("/tcc-hostile-absent", "/tcc-hostile-absent")
	p := probe("pivot_root(absent, absent)", err)
	if err == syscall.ENOENT {
		p.Allowed, p.Note = true, "passed the capability check (failed only on the paths)"
	}
	r.Probes = append(r.Probes, p)
	summarize(&r)
	return r, nil
}
