package attack

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/trustcells/tcc/cells/cellio"
)

func init() {
	register("fork-bomb", "the pids limit stops a cell that keeps starting processes (cgroup pids)", forkBomb)
	register("memory-bomb", "the memory limit stops a cell that keeps allocating (cgroup memory, OOM kill)", memoryBomb)
	register("busy-loop", "the wall-clock deadline stops a cell that never ends (and cpu quota throttles it)", busyLoop)
	register("stdout-flood", "the output cap stops a cell that writes without end", stdoutFlood)
	register("undeclared-syscall", "a syscall the manifest does not allow kills the cell (seccomp, SIGSYS)", undeclaredSyscall)
	register("bad-output", "a result that is not one JSON object matching the output schema is refused (invalid-output), nor one whose stdout passed the cap (output-too-large)", badOutput)
	register("crash", "a cell that dies of a signal of its own is reported crashed, with no result", crash)
}

// paddedPad follows a valid result in bad-output's "padded" mode: more than
// any hostile variant's limits.output, so stdout passes the cap, while what
// fits under the cap is still one valid JSON object.
const paddedPad = 2 << 20

// badOutputs are what bad-output writes to stdout before it exits 0.
var badOutputs = map[string]string{
	"text":     "hostile: this is not JSON\n",
	"array":    `[{"attack": "bad-output", "blocked": false, "errno": "", "detail": "in an array", "count": 0}]` + "\n",
	"mismatch": `{"attack": "bad-output", "blocked": "no", "detail": "blocked is a string, errno and count are missing"}` + "\n",
	"two":      `{"attack": "bad-output", "blocked": false, "errno": "", "detail": "one", "count": 1}` + "\n" + `{"attack": "bad-output", "blocked": false, "errno": "", "detail": "two", "count": 2}` + "\n",
	"empty":    "",
}

// badOutput writes one of badOutputs (input.output) and exits 0 without the
// usual report: the daemon, not the exit status, must notice. "padded" is a
// valid report followed by more spaces than limits.output: cut at the cap,
// stdout would still parse as a good result.
func badOutput(in Input) (Result, error) {
	out, ok := badOutputs[in.Output]
	if in.Output == "padded" {
		out, ok = `{"attack": "bad-output", "blocked": false, "errno": "", "detail": "padded past the cap", "count": 0}`+strings.Repeat(" ", paddedPad), true
	}
	if !ok {
		return Result{}, fmt.Errorf("input.output %q is not one of text, array, mismatch, two, empty, padded", in.Output)
	}
	if _, err := os.Stdout.WriteString(out); err != nil {
		return Result{}, err
	}
	os.Exit(exitOK)
	return Result{}, nil
}

// forkBomb starts sleeping helpers until the kernel refuses (EAGAIN at the
// pids limit) or max is reached. The helpers die with the pid namespace.
// Main exits 1 after the report.
func forkBomb(in Input) (Result, error) {
	max := in.Max
	if max <= 0 || max > 4096 {
		max = 1024
	}
	var n int64
	for n < max {
		if _, err := spawn("sleep", nil); err != nil {
			return Result{
				Blocked: true, Errno: errnoName(err), Count: n,
				Detail: fmt.Sprintf("started %d processes, then: %v", n, err),
			}, nil
		}
		n++
	}
	return Result{Count: n, Detail: fmt.Sprintf("started %d processes and nothing stopped it", n)}, nil
}

// memoryBomb allocates and touches 8 MiB at a time until it is killed, or
// until max MiB (default 4096), which means no limit stopped it.
func memoryBomb(in Input) (Result, error) {
	const step = 8 << 20
	max := in.Max
	if max <= 0 || max > 16384 {
		max = 4096
	}
	p := cellio.OpenProgress()
	var hold [][]byte
	for mib := int64(0); mib < max; mib += step >> 20 {
		b := make([]byte, step)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hold = append(hold, b)
		p.Report(float64(mib)/float64(max), fmt.Sprintf("%d MiB", mib+step>>20))
	}
	return Result{Count: int64(len(hold)) * step >> 20, Detail: fmt.Sprintf("held %d MiB and nothing stopped it", int64(len(hold))*step>>20)}, nil
}

// busyLoop spins for seconds (default and cap one hour) on threads
// goroutines (default 1).
func busyLoop(in Input) (Result, error) {
	secs := in.Seconds
	if secs <= 0 || secs > 3600 {
		secs = 3600
	}
	threads := min(max(in.Threads, 1), 64)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	done := make(chan int64)
	for range threads {
		go func() {
			var n int64
			for time.Now().Before(deadline) {
				for range 1 << 16 {
					n++
				}
			}
			done <- n
		}()
	}
	var total int64
	for range threads {
		total += <-done
	}
	return Result{Count: total, Detail: fmt.Sprintf("spun %.0f s and nothing stopped it", secs)}, nil
}

// stdoutFlood writes 64 KiB blocks of 'A' to stdout until writing fails
// or max MiB (default 1024) are out.
func stdoutFlood(in Input) (Result, error) {
	max := in.Max
	if max <= 0 || max > 1<<16 {
		max = 1024
	}
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = 'A'
	}
	var n int64
	for n < max<<20 {
		w, err := os.Stdout.Write(block)
		n += int64(w)
		if err != nil {
			// Stdout is gone, so the report goes to stderr; Main's JSON
			// will fail to write too and exit 1.
			fmt.Fprintf(os.Stderr, "hostile: stdout-flood: stopped after %d bytes: %v\n", n, err)
			return Result{Blocked: true, Errno: errnoName(err), Count: n}, nil
		}
	}
	fmt.Fprintf(os.Stderr, "hostile: stdout-flood: wrote %d bytes and nothing stopped it\n", n)
	return Result{Count: n, Detail: "nothing stopped the flood"}, nil
}

// undeclared are harmless system calls a Go program never makes, with
// arguments that only query. The hostile-seccomp manifest allows none.
var undeclared = map[string]func() (uintptr, syscall.Errno){
	// SYSLOG_ACTION_SIZE_BUFFER: the size of the kernel log buffer.
	"syslog": func() (uintptr, syscall.Errno) {
		r, _, e := syscall.RawSyscall(syscall.SYS_SYSLOG, 10, 0, 0)
		return r, e
	},
	// personality(0xffffffff) reads the execution domain.
	"personality": func() (uintptr, syscall.Errno) {
		r, _, e := syscall.RawSyscall(syscall.SYS_PERSONALITY, 0xffffffff, 0, 0)
		return r, e
	},
	"sysinfo": func() (uintptr, syscall.Errno) {
		var si syscall.Sysinfo_t
		return 0, errnoOf(syscall.Sysinfo(&si))
	},
}

// undeclaredSyscall makes one syscall the manifest does not allow. The
// expected outcome is no output at all: seccomp kills the process with
// SIGSYS. If the call returns, the filter let it through (or returned an
// errno instead of killing, which the report says).
func undeclaredSyscall(in Input) (Result, error) {
	name := cmpOr(in.Syscall, "syslog")
	call, ok := undeclared[name]
	if !ok {
		return Result{}, fmt.Errorf("input.syscall %q is not one of syslog, personality, sysinfo", name)
	}
	v, e := call()
	if e == syscall.ENOSYS {
		return Result{Blocked: true, Errno: "ENOSYS", Detail: name + " returned ENOSYS: denied by an errno action, not killed"}, nil
	}
	r := Result{Detail: fmt.Sprintf("%s returned %d and the process lives", name, v)}
	if e != 0 {
		r.Errno = errnoName(e)
		r.Detail = fmt.Sprintf("%s returned %s and the process lives (seccomp errno action, or the kernel's own check)", name, r.Errno)
	}
	return r, nil
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EINVAL
}

// crash dies of a real SIGSEGV: it restores the default action (raw
// rt_sigaction: the Go runtime would turn the fault into a panic and exit 2)
// and writes through a nil pointer. A signal it sent itself would not do: as
// PID 1 of its pid namespace the cell ignores every signal whose action is
// the default, unless the kernel forces it, as it does for a fault.
func crash(in Input) (Result, error) {
	var act [4]uintptr // struct kernel_sigaction: handler (SIG_DFL = 0), flags, restorer, mask
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
		return Result{}, e
	}
	*nowhere = 1
	return Result{Detail: "survived a nil write"}, nil
}

// nowhere is nil: crash writes through it.
var nowhere *int
