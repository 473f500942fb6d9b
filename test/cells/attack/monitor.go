package attack

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
)

func init() {
	register("getppid-n", "(workload) exactly n getppid calls, for the monitor's syscall histogram", getppidN)
	register("entropy", "(workload) n bytes of chosen entropy written to stderr, /tmp or stdout, for the monitor's entropy measure", entropy)
	register("burst", "(workload) ordinary unless trigger is set; then seconds of syscalls it never makes otherwise, for the monitor to halt", burst)
}

// getppidN calls getppid exactly n times (default 1).
func getppidN(in Input) (Result, error) {
	n := in.N
	if n <= 0 {
		n = 1
	}
	if n > 100_000_000 {
		return Result{}, fmt.Errorf("input.n is %d; at most 100000000", n)
	}
	for range n {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
	return Result{Count: n, Detail: fmt.Sprintf("called getppid %d times", n)}, nil
}

const loremText = "the quick brown fox jumps over the lazy dog while a cell computes what it was asked and nothing else "

// entropy writes n bytes (default 64 KiB) in 4 KiB writes:
//   - mode random: a PRNG stream (ChaCha8 seeded from seed), about 8 bits/byte;
//   - mode text: English-like text, about 4 bits/byte;
//   - mode repeat: one repeated character, 0 bits/byte.
//
// Sinks: stderr (default), tmp (/tmp/tcc-hostile-entropy), or stdout, where
// the bytes go base64-encoded into the result's data field (about 6 bits per
// byte of output for random input).
func entropy(in Input) (Result, error) {
	n := in.N
	if n <= 0 {
		n = 64 << 10
	}
	if n > 64<<20 {
		return Result{}, fmt.Errorf("input.n is %d; at most 64 MiB", n)
	}
	mode := cmpOr(in.Mode, "random")
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(in.Seed >> (8 * i))
	}
	rng := rand.NewChaCha8(seed)
	fill := func(b []byte, off int64) {
		switch mode {
		case "random":
			rng.Read(b)
		case "text":
			for i := range b {
				b[i] = loremText[(off+int64(i))%int64(len(loremText))]
			}
		default:
			for i := range b {
				b[i] = 'A'
			}
		}
	}
	if mode != "random" && mode != "text" && mode != "repeat" {
		return Result{}, fmt.Errorf("input.mode %q is not one of random, text, repeat", mode)
	}

	sink := cmpOr(in.Sink, "stderr")
	r := Result{Count: n, Detail: fmt.Sprintf("wrote %d %s bytes to %s", n, mode, sink)}
	switch sink {
	case "stdout":
		b := make([]byte, n)
		fill(b, 0)
		r.Data = base64.StdEncoding.EncodeToString(b)
		return r, nil
	case "stderr", "tmp":
	default:
		return Result{}, fmt.Errorf("input.sink %q is not one of stderr, tmp, stdout", sink)
	}
	// Plain write(2) on a plain fd: each chunk is one syscall the monitor
	// sees, and no poller is started (the monitor variants allow no epoll).
	fd := 2
	if sink == "tmp" {
		var err error
		fd, err = syscall.Open("/tmp/tcc-hostile-entropy", syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return Result{}, &os.PathError{Op: "open", Path: "/tmp/tcc-hostile-entropy", Err: err}
		}
		defer syscall.Close(fd)
	}
	buf := make([]byte, 4096)
	for off := int64(0); off < n; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), n-off)]
		fill(chunk, off)
		for len(chunk) > 0 {
			w, err := syscall.Write(fd, chunk)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return Result{}, fmt.Errorf("write %s: %w", sink, err)
			}
			chunk = chunk[w:]
		}
	}
	return r, nil
}

// burst does almost nothing for ordinary inputs. With trigger it loops for
// seconds (default 10, at most 120) over uname, getrusage and statfs, calls
// it makes at no other time, so the run's fingerprint departs sharply from
// a baseline learned on ordinary inputs.
func burst(in Input) (Result, error) {
	if !in.Trigger {
		return Result{Detail: "ordinary run: ok"}, nil
	}
	secs := in.Seconds
	if secs <= 0 {
		secs = 10
	}
	if secs > 120 {
		return Result{}, fmt.Errorf("input.seconds is %g; at most 120", secs)
	}
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var (
		n  int64
		u  syscall.Utsname
		ru syscall.Rusage
		fs syscall.Statfs_t
	)
	for time.Now().Before(deadline) {
		for range 256 {
			syscall.Uname(&u)
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			syscall.Statfs("/", &fs)
			n += 3
		}
	}
	return Result{Count: n, Detail: fmt.Sprintf("made %d syscalls in %.0f s and nothing halted it", n, secs)}, nil
}
