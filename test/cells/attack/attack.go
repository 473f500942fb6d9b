package attack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trustcells/tcc/cells/cellio"
)

// Exit statuses. A blocked attack is still a success (exit 0): the output
// says it was blocked.
const (
	exitOK      = 0
	exitFailed  = 1 // bad input, or fork-bomb after its report
	exitRefused = 3 // not PID 1 of a fresh pid namespace
)

// RefusalMessage is what the binary prints before exiting 3 outside a fresh
// pid namespace.
const RefusalMessage = "hostile: refusing to run outside a fresh pid namespace"

// childArg as argv[1] makes the binary a harmless helper process (see
// runChild); the attacks that need processes re-execute themselves with it.
const childArg = "tcc-hostile-child"

// Input is every attack's parameters; each attack reads the ones it needs.
type Input struct {
	Attack    string   `json:"attack"`
	Port      int      `json:"port,omitempty"`      // net-connect
	Addresses []string `json:"addresses,omitempty"` // net-connect: IP literals
	Paths     []string `json:"paths,omitempty"`     // read-host-file, write-outside-tmp: extra paths
	Flags     []string `json:"flags,omitempty"`     // unshare: namespaces to try
	Method    string   `json:"method,omitempty"`    // unshare: unshare, clone or both
	Channels  []string `json:"channels,omitempty"`  // persist-*: files, sysv-shm, keyring
	Token     string   `json:"token,omitempty"`     // persist-*: marker content
	N         int64    `json:"n,omitempty"`         // getppid-n: calls; entropy: bytes; pids: children
	Max       int64    `json:"max,omitempty"`       // upper bound for bombs and scans
	Mode      string   `json:"mode,omitempty"`      // entropy: random, repeat, text
	Sink      string   `json:"sink,omitempty"`      // entropy: stderr, tmp, stdout
	Seed      uint64   `json:"seed,omitempty"`      // entropy: PRNG seed
	Seconds   float64  `json:"seconds,omitempty"`   // busy-loop, burst: duration
	Threads   int      `json:"threads,omitempty"`   // busy-loop: spinning goroutines
	Trigger   bool     `json:"trigger,omitempty"`   // burst: start the burst
	Syscall   string   `json:"syscall,omitempty"`   // undeclared-syscall: which one
	Output    string   `json:"output,omitempty"`    // bad-output: what to print
}

// Result is the output of every attack. Blocked is true when every probe
// of the attack was refused; for the workloads that probe nothing (the
// bombs that got no limit, getppid-n, entropy, burst) it is false.
type Result struct {
	Attack  string  `json:"attack"`
	Blocked bool    `json:"blocked"`
	Errno   string  `json:"errno"` // the distinct errnos of refused probes, comma-separated
	Detail  string  `json:"detail"`
	Probes  []Probe `json:"probes,omitempty"`
	Count   int64   `json:"count"`
	Data    string  `json:"data,omitempty"`
}

// Probe is one attempt: Allowed is true when the operation succeeded.
type Probe struct {
	Target  string `json:"target"`
	Allowed bool   `json:"allowed"`
	Errno   string `json:"errno,omitempty"`
	Note    string `json:"note,omitempty"`
}

type attackFunc func(in Input) (Result, error)

// entry is one attack and the claim it tests.
type entry struct {
	claim string
	run   attackFunc
}

// attacks is filled in by init functions beside each attack.
var attacks = map[string]entry{}

func register(name, claim string, run attackFunc) {
	if _, dup := attacks[name]; dup {
		panic("attack registered twice: " + name)
	}
	attacks[name] = entry{claim, run}
}

// Names lists the attacks, sorted.
func Names() []string {
	names := make([]string, 0, len(attacks))
	for n := range attacks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Claim returns the one-line claim an attack tests.
func Claim(name string) string { return attacks[name].claim }

// Main is the whole program of every hostile cell variant.
func Main() {
	if len(os.Args) > 2 && os.Args[1] == childArg {
		os.Exit(runChild(os.Args[2]))
	}
	cellio.CapProcs()
	if ok, why := freshPIDNamespace(); !ok {
		fmt.Fprintf(os.Stderr, "%s (%s)\n", RefusalMessage, why)
		os.Exit(exitRefused)
	}
	var in Input
	if err := cellio.Decode(io.LimitReader(os.Stdin, 1<<20), &in); err != nil {
		cellio.Fail("hostile", err)
	}
	e, ok := attacks[in.Attack]
	if !ok {
		cellio.Fail("hostile", fmt.Errorf("input.attack %q is not an attack; known: %s", in.Attack, strings.Join(Names(), ", ")))
	}
	res, err := e.run(in)
	if err != nil {
		cellio.Fail("hostile", fmt.Errorf("%s: %w", in.Attack, err))
	}
	res.Attack = in.Attack
	if err := cellio.Encode(os.Stdout, res); err != nil {
		cellio.Fail("hostile", err)
	}
	if in.Attack == "fork-bomb" {
		// The verdict should come from the pids limit, not from a clean
		// exit: say what happened on stderr too, and fail.
		fmt.Fprintf(os.Stderr, "hostile: fork-bomb: %s\n", res.Detail)
		os.Exit(exitFailed)
	}
	os.Exit(exitOK)
}

// freshPIDNamespace reports whether this process is the first process of a
// pid namespace created for it: PID 1 with no parent in sight. A /proc
// mounted from another pid namespace would name a different pid for
// "self"; then the namespace is not the cell's own and the answer is no.
func freshPIDNamespace() (bool, string) {
	return checkPIDNamespace(os.Getpid(), syscall.Getppid(), procSelfPID())
}

func checkPIDNamespace(pid, ppid int, procPID string) (bool, string) {
	switch {
	case pid != 1:
		return false, fmt.Sprintf("pid is %d, not 1", pid)
	case ppid != 0:
		return false, fmt.Sprintf("parent pid is %d, not 0", ppid)
	case procPID != "" && procPID != "1":
		return false, fmt.Sprintf("/proc belongs to another pid namespace: it says this process is pid %s", procPID)
	}
	return true, ""
}

// procSelfPID is the first field of /proc/self/stat, or "" without /proc.
// It reads with open/read/close alone: os.ReadFile would start the
// runtime's poller (epoll, eventfd), syscalls the narrow variants' filters
// need not allow just for the guard.
func procSelfPID() string {
	fd, err := syscall.Open("/proc/self/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer syscall.Close(fd)
	buf := make([]byte, 64)
	n, err := syscall.Read(fd, buf)
	if err != nil || n <= 0 {
		return "?"
	}
	pid, _, _ := strings.Cut(string(buf[:n]), " ")
	return pid
}

// runChild is the whole program of a helper process. It does nothing a
// process could not do anywhere: exit, or sleep until its pid namespace
// is torn down (at most two minutes).
func runChild(mode string) int {
	switch mode {
	case "exit":
		return 0
	case "sleep":
		time.Sleep(2 * time.Minute)
		return 0
	}
	return 2
}

// selfPath is the path to re-execute this binary with.
func selfPath() string {
	if strings.Contains(os.Args[0], "/") {
		return os.Args[0]
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return filepath.Join("/cell", os.Args[0])
}

// spawn starts a helper process in the given mode with extra clone or
// unshare flags and returns its pid. The helper gets the cell's stdin and
// its stderr as both stdout and stderr, never its stdout (the cell's JSON
// result): the Go runtime aborts (exit 2) when it starts with fds 0-2
// closed and there is no /dev/null to fill them with, which would make a
// namespace that was created look refused.
func spawn(mode string, attr *syscall.SysProcAttr) (int, error) {
	exe := selfPath()
	return syscall.ForkExec(exe, []string{exe, childArg, mode}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{0, 2, 2},
		Sys:   attr,
	})
}

// reap waits for pid and describes how it ended: "" for exit 0, else the
// exit status or signal.
func reap(pid int) string {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR || (err == nil && ws.Stopped()) {
			continue // a traced child reports stops; wait for its end
		}
		if err != nil {
			return errnoName(err)
		}
		break
	}
	switch {
	case ws.Signaled():
		return signalName(ws.Signal())
	case ws.Exited() && ws.ExitStatus() == 0:
		return ""
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	}
	return "status " + strconv.Itoa(int(ws))
}

// killAll kills and reaps helper processes.
func killAll(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	for _, p := range pids {
		reap(p)
	}
}

// summarize fills Blocked and Errno from the probes: blocked when no probe
// was allowed.
func summarize(r *Result) {
	r.Blocked = true
	var errnos []string
	for _, p := range r.Probes {
		if p.Allowed {
			r.Blocked = false
			continue
		}
		if p.Errno != "" && !slices.Contains(errnos, p.Errno) {
			errnos = append(errnos, p.Errno)
		}
	}
	sort.Strings(errnos)
	r.Errno = strings.Join(errnos, ",")
	if r.Detail == "" {
		var allowed []string
		for _, p := range r.Probes {
			if p.Allowed {
				allowed = append(allowed, p.Target)
			}
		}
		if r.Blocked {
			r.Detail = fmt.Sprintf("all %d probes refused", len(r.Probes))
		} else {
			r.Detail = "allowed: " + strings.Join(allowed, ", ")
		}
	}
}

// probe records the outcome of one attempt.
func probe(target string, err error) Probe {
	if err == nil {
		return Probe{Target: target, Allowed: true}
	}
	return Probe{Target: target, Errno: errnoName(err), Note: noteFor(err)}
}

func noteFor(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return ""
	}
	return err.Error()
}

// mustJSON is for Data fields.
func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
