//go:build cgo && seccomp

package seccomp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/manifest"
)

// TestRuntimesUnderBase runs the measured programs under the base profile,
// loaded as libcontainer loads it, in a root with no /proc and no /sys:
// each must do its job and exit 0.
func TestRuntimesUnderBase(t *testing.T) {
	base := mustCompile(t, manifest.Syscalls{})
	small := []byte(`{"cell":"tcc","n":[1,2,3],"ok":true}` + "\n")
	big := make([]byte, 3<<20) // past the mmap threshold: realloc takes mremap
	rand.Read(big)

	tests := []struct {
		prog  string
		env   []string
		input []byte
		proc  bool
	}{
		{"cstdio-glibc", nil, small, false},
		{"cstdio-musl", nil, small, false},
		{"cslurp-glibc", nil, big, false},
		{"cslurp-musl", nil, big, false},
		{"gohello", []string{"GOMAXPROCS=1"}, small, false},
		{"gohello", []string{"GOMAXPROCS=2"}, big, false},
		{"gojson", []string{"GOMAXPROCS=1"}, small, false},
		{"gojson", []string{"GOMAXPROCS=2"}, small, false},
		// With filesystem.proc the Go runtime finds and reads more.
		{"gohello", []string{"GOMAXPROCS=2"}, small, true},
		{"gojson", []string{"GOMAXPROCS=2"}, small, true},
		{"cstdio-glibc", nil, small, true},
	}
	for _, tt := range tests {
		name := fmt.Sprint(tt.prog, tt.env)
		if tt.proc {
			name += "+proc"
		}
		t.Run(name, func(t *testing.T) {
			o := run(t, runOpts{profile: base, guard: true, proc: tt.proc, env: tt.env, stdin: tt.input}, tt.prog)
			if o.exitCode != 0 {
				t.Fatalf("%s under the base profile: %v", tt.prog, o)
			}
			want := string(tt.input)
			if tt.prog == "gojson" {
				want = gojsonOutput(t, tt.input)
			}
			if o.stdout != want {
				t.Errorf("stdout = %q, want %q", trim(o.stdout), trim(want))
			}
		})
	}
}

func gojsonOutput(t *testing.T, in []byte) string {
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		t.Fatal(err)
	}
	canon, _ := json.Marshal(v)
	sum := sha256.Sum256(canon)
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(map[string]any{"sha256": hex.EncodeToString(sum[:]), "bytes": len(canon)})
	return b.String()
}

// Expected ends of a probe run.
type expect struct {
	killed bool // by SIGSYS
	errno  int  // the syscall failed with this errno (probe sys)
	stdout string
	ran    bool // the syscall ran: not killed, and not one of the filter's errnos
}

var probeOut = regexp.MustCompile(`^ret=(-?\d+) errno=(\d+)\n$`)

func sys(nr int, args ...uint64) []string {
	argv := []string{"probe", "sys", strconv.Itoa(nr)}
	for _, a := range args {
		argv = append(argv, fmt.Sprintf("%#x", a))
	}
	return argv
}

// TestFilterOnKernel loads compiled profiles into real processes and checks
// what the kernel does with calls inside and outside them.
func TestFilterOnKernel(t *testing.T) {
	base := manifest.Syscalls{}
	process := manifest.Syscalls{Groups: []string{"@process"}}
	network := manifest.Syscalls{Groups: []string{"@network-io"}}
	ipc := manifest.Syscalls{Groups: []string{"@ipc"}}
	const (
		prSetName  = 15
		fionread   = 0x541B
		sockPacket = 17
		sockRaw    = 3
		nrUnused   = 400 // a hole in the x86_64 table, below the profile's highest syscall
	)
	tests := []struct {
		name   string
		req    manifest.Syscalls
		unsafe bool
		guard  bool
		argv   []string
		want   expect
	}{
		// Outside the contract: the process dies.
		{"getppid not granted", base, false, true, sys(unix.SYS_GETPPID), expect{killed: true}},
		{"getppid with @process", process, false, true, sys(unix.SYS_GETPPID), expect{ran: true}},
		{"fork from base", base, false, true, []string{"probe", "fork"}, expect{killed: true}},
		{"fork with @process", process, false, true, []string{"probe", "fork"}, expect{stdout: "child=7\n"}},
		{"clone NEWUSER with @process", process, false, true, sys(unix.SYS_CLONE, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), expect{killed: true}},
		{"clone NEWNET with @process", process, false, true, sys(unix.SYS_CLONE, unix.CLONE_NEWNET|uint64(unix.SIGCHLD)), expect{killed: true}},
		{"unused number below the top", base, false, true, sys(nrUnused), expect{killed: true}},

		// The graceful answers.
		{"clone3", base, false, true, sys(unix.SYS_CLONE3), expect{errno: int(unix.ENOSYS)}},
		{"clone3 with @process", process, false, true, sys(unix.SYS_CLONE3), expect{errno: int(unix.ENOSYS)}},
		{"rseq", base, false, true, sys(unix.SYS_RSEQ), expect{errno: int(unix.ENOSYS)}},
		{"copy_file_range", base, false, true, sys(unix.SYS_COPY_FILE_RANGE), expect{errno: int(unix.ENOSYS)}},
		{"readlink", base, false, true, sys(unix.SYS_READLINK), expect{errno: int(unix.EACCES)}},
		{"ioctl TCGETS", base, false, true, sys(unix.SYS_IOCTL, 0, unix.TCGETS), expect{errno: int(unix.ENOTTY)}},
		{"ioctl TIOCGWINSZ", base, false, true, sys(unix.SYS_IOCTL, 1, unix.TIOCGWINSZ), expect{errno: int(unix.ENOTTY)}},
		{"ioctl FIONREAD", base, false, true, sys(unix.SYS_IOCTL, 0, fionread), expect{killed: true}},
		{"ioctl as extra", manifest.Syscalls{Extra: []string{"ioctl"}}, false, true, sys(unix.SYS_IOCTL, 0, fionread), expect{ran: true}},
		{"prctl PR_SET_VMA", base, false, true, sys(unix.SYS_PRCTL, unix.PR_SET_VMA), expect{errno: int(unix.EINVAL)}},
		{"prctl PR_SET_NAME", base, false, true, sys(unix.SYS_PRCTL, prSetName), expect{killed: true}},
		// Above the highest syscall the profile names, runc's stub answers
		// ENOSYS (the kernel itself would say EINVAL to these arguments).
		{"futex_waitv above the top", base, false, true, sys(unix.SYS_FUTEX_WAITV), expect{errno: int(unix.ENOSYS)}},

		// Sockets.
		{"socket without @network-io", base, false, true, sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), expect{killed: true}},
		{"socket inet stream", network, false, true, sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC), expect{ran: true}},
		{"socket inet6 udp", network, false, true, sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_UDP), expect{ran: true}},
		{"socket unix dgram", network, false, true, sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK), expect{ran: true}},
		{"socket netlink", network, false, true, sys(unix.SYS_SOCKET, unix.AF_NETLINK, sockRaw), expect{killed: true}},
		{"socket packet", network, false, true, sys(unix.SYS_SOCKET, sockPacket, sockRaw), expect{killed: true}},
		{"socket raw icmp", network, false, true, sys(unix.SYS_SOCKET, unix.AF_INET, sockRaw, unix.IPPROTO_ICMP), expect{killed: true}},
		{"socket sctp", network, false, true, sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP), expect{killed: true}},
		{"socket high bits", network, false, true, sys(unix.SYS_SOCKET, 1<<32|unix.AF_INET, unix.SOCK_STREAM), expect{killed: true}},
		{"socketpair inet", network, false, true, sys(unix.SYS_SOCKETPAIR, unix.AF_INET, unix.SOCK_STREAM), expect{killed: true}},

		// Descriptor flags yes, record locks no (they act on inodes that
		// concurrent calls share), unless the contract names fcntl.
		{"fcntl F_GETFD", base, false, true, sys(unix.SYS_FCNTL, 0, unix.F_GETFD), expect{ran: true}},
		{"fcntl F_DUPFD_CLOEXEC", base, false, true, sys(unix.SYS_FCNTL, 0, unix.F_DUPFD_CLOEXEC, 10), expect{ran: true}},
		{"fcntl F_SETLK", base, false, true, sys(unix.SYS_FCNTL, 0, unix.F_SETLK), expect{killed: true}},
		{"fcntl F_OFD_SETLK", base, false, true, sys(unix.SYS_FCNTL, 0, unix.F_OFD_SETLK), expect{killed: true}},
		{"fcntl F_GETFD with high bits", base, false, true, sys(unix.SYS_FCNTL, 0, 1<<32|unix.F_GETFD), expect{killed: true}},
		{"fcntl F_SETLK as extra", manifest.Syscalls{Extra: []string{"fcntl"}}, false, true, sys(unix.SYS_FCNTL, 0, unix.F_GETLK), expect{ran: true}},

		// Resource limits: never RLIMIT_CORE, whose value 1 keeps core
		// dumps away from a |helper on the host.
		{"prlimit64 read CORE", base, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, 0, 0), expect{ran: true}},
		{"prlimit64 set NOFILE", base, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, 0, 0), expect{ran: true}},
		{"prlimit64 set CORE", base, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, 8, 0), expect{killed: true}},
		{"prlimit64 set STACK", base, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_STACK, 8, 0), expect{killed: true}},
		{"prlimit64 of pid 1", base, false, true, sys(unix.SYS_PRLIMIT64, 1, unix.RLIMIT_NOFILE, 0, 0), expect{killed: true}},
		{"prlimit64 as extra, set STACK", manifest.Syscalls{Extra: []string{"prlimit64"}}, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_STACK, 8, 0), expect{ran: true}},
		{"prlimit64 as extra, set CORE", manifest.Syscalls{Extra: []string{"prlimit64"}}, false, true, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, 8, 0), expect{killed: true}},
		{"prlimit64 as extra, set CORE with high bits", manifest.Syscalls{Extra: []string{"prlimit64"}}, false, true, sys(unix.SYS_PRLIMIT64, 0, 1<<32|unix.RLIMIT_CORE, 8, 0), expect{killed: true}},
		{"setrlimit as extra, CORE", manifest.Syscalls{Extra: []string{"setrlimit"}}, false, true, sys(unix.SYS_SETRLIMIT, unix.RLIMIT_CORE, 8), expect{killed: true}},
		{"setrlimit as extra, NOFILE", manifest.Syscalls{Extra: []string{"setrlimit"}}, false, true, sys(unix.SYS_SETRLIMIT, unix.RLIMIT_NOFILE, 8), expect{ran: true}},

		// memfd only sealed against exec.
		{"memfd_create plain", ipc, false, true, sys(unix.SYS_MEMFD_CREATE, 0, 0), expect{killed: true}},
		{"memfd_create MFD_EXEC", ipc, false, true, sys(unix.SYS_MEMFD_CREATE, 0, unix.MFD_EXEC), expect{killed: true}},
		{"memfd_create MFD_NOEXEC_SEAL", ipc, false, true, sys(unix.SYS_MEMFD_CREATE, 0, unix.MFD_NOEXEC_SEAL|unix.MFD_CLOEXEC), expect{ran: true}},

		// Foreign ABIs. libcontainer's filter alone kills the thread; with
		// the guard the process dies.
		{"x32", base, false, true, []string{"probe", "x32"}, expect{killed: true}},
		{"i386", base, false, true, []string{"probe", "int80"}, expect{killed: true}},
		{"x32 in a thread", base, false, true, []string{"probe", "thread-x32"}, expect{killed: true}},
		{"i386 in a thread", base, false, true, []string{"probe", "thread-int80"}, expect{killed: true}},
		{"x32 without guard", base, false, false, []string{"probe", "x32"}, expect{killed: true}},
		{"i386 without guard", base, false, false, []string{"probe", "int80"}, expect{killed: true}},
		{"x32 in a thread without guard", base, false, false, []string{"probe", "thread-x32"}, expect{stdout: "survived\n"}},
		{"i386 in a thread without guard", base, false, false, []string{"probe", "thread-int80"}, expect{stdout: "survived\n"}},

		// The test-only escape hatch lets a forbidden syscall through.
		{"unshare(0) unsafe", manifest.Syscalls{Extra: []string{"unshare"}}, true, true, sys(unix.SYS_UNSHARE, 0), expect{stdout: "ret=0 errno=0\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compile := Compile
			if tt.unsafe {
				compile = CompileUnsafeForTest
			}
			p, err := compile(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			o := run(t, runOpts{profile: p, guard: tt.guard}, tt.argv...)
			switch {
			case tt.want.killed:
				if !o.killedBySIGSYS() {
					t.Fatalf("%v: got %v, want killed by SIGSYS", tt.argv, o)
				}
				return
			case o.exitCode != 0:
				t.Fatalf("%v: got %v, want exit 0", tt.argv, o)
			case tt.want.stdout != "":
				if o.stdout != tt.want.stdout {
					t.Fatalf("%v: stdout %q, want %q", tt.argv, o.stdout, tt.want.stdout)
				}
				return
			}
			m := probeOut.FindStringSubmatch(o.stdout)
			if m == nil {
				t.Fatalf("%v: unexpected output %v", tt.argv, o)
			}
			errno, _ := strconv.Atoi(m[2])
			if tt.want.errno != 0 && errno != tt.want.errno {
				t.Errorf("%v: errno %d (%v), want %d (%v)", tt.argv, errno, unix.Errno(errno), tt.want.errno, unix.Errno(tt.want.errno))
			}
			if tt.want.ran {
				for _, r := range p.Rules() {
					if r.Action == ActErrno && int(r.Errno) == errno && errno != 0 {
						t.Errorf("%v: errno %v, which the filter may have answered; want the kernel's own result", tt.argv, unix.Errno(errno))
					}
				}
			}
		})
	}
}

// TestCrashesKeepTheirSignal checks that a cell that dies for its own
// reasons is not reported as a contract violation: the runtimes' ways of
// dying (re-raising SIGPIPE, abort) are inside the base.
func TestCrashesKeepTheirSignal(t *testing.T) {
	base := mustCompile(t, manifest.Syscalls{})
	tests := []struct {
		name string
		o    runOpts
		argv []string
		want unix.Signal
	}{
		{"Go writes to a closed stdout", runOpts{stdoutGone: true, stdin: []byte("x")}, []string{"gohello"}, unix.SIGPIPE},
		{"C writes to a closed stdout", runOpts{stdoutGone: true, stdin: []byte("x")}, []string{"cstdio-glibc"}, unix.SIGPIPE},
		{"C aborts", runOpts{}, []string{"probe", "abort"}, unix.SIGABRT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.profile, tt.o.guard = base, true
			o := run(t, tt.o, tt.argv...)
			if o.exitCode != -1 || o.signal != tt.want {
				t.Fatalf("%v: got %v, want killed by %v", tt.argv, o, tt.want)
			}
		})
	}
}
