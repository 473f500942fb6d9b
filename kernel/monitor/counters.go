package monitor

import (
	"math"
	"time"
)

// Counters are a cell's counters as aggregated in the kernel.
type Counters struct {
	// Syscalls counts syscalls by number (only numbers seen).
	Syscalls map[uint32]uint64
	// Pairs counts consecutive syscalls of one task, {previous, current};
	// a task's first syscall has PairStart as its previous, a number
	// outside the table is NrOther.
	Pairs map[[2]uint32]uint64
	// Bytes is the histogram of sampled write-family output bytes.
	Bytes [256]uint64

	TotalSyscalls  uint64 // all counted syscalls
	OtherSyscalls  uint64 // of which numbered outside the table
	CompatSyscalls uint64 // ia32 (int 0x80) syscalls, not counted elsewhere

	// BytesWritten are the bytes write, pwrite64, writev, pwritev(2),
	// vmsplice, sendto, sendmsg and sendmmsg wrote: the sum of what they
	// returned, read at syscall exit (a call that fails adds nothing, and
	// the length a cell passes cannot inflate it). BytesSampled of them
	// were read into Bytes: of each call's output, all of it up to 1 KiB,
	// else four 256-byte chunks at random offsets. Unsampled counts pieces
	// of written output that could not be read back for sampling.
	BytesWritten, BytesSampled, Unsampled uint64

	Forks   uint64 // processes created by the cell
	Threads uint64 // threads created by the cell
	Execs   uint64 // successful execs (the cell's own included)
	Exits   uint64 // processes that exited

	// NovelPairs counts, in the kernel, distinct pairs missing from the
	// baseline given to Watch (0 without one).
	NovelPairs uint64
	// Kills counts tasks killed by seccomp; SeccompKills names the denied
	// syscalls in the order of the kills (at most 8 per CPU).
	Kills        uint64
	SeccompKills []SeccompKill

	// Lost events; any of them makes the fingerprint incomplete.
	Dropped      uint64 // a kernel map was full or out of memory
	PairOverflow uint64 // new pairs past Options.PairsPerCell, not recorded
	Missed       uint64 // BPF runs the kernel skipped while this cell was watched (any cell's)
	// Unread: the counters could not be read at all (Watch.Close failed);
	// every other field is zero.
	Unread bool

	// CPU and PeakMemory come from the sandbox's cgroups, not from BPF:
	// the caller fills them in from its own reading after the cell exited
	// (0 when unknown, and in counters read while it runs).
	CPU        time.Duration
	PeakMemory uint64
}

// SeccompKill is a task killed by seccomp for calling syscall Nr: an
// x86_64 number, or an ia32 one (int 0x80) when Compat is set, named
// "ia32 syscall N".
type SeccompKill struct {
	Nr     uint32 `json:"nr"`
	Name   string `json:"name"`
	Compat bool   `json:"compat,omitempty"`
}

// Lost reports whether events were lost (or the counters could not be
// read), so the counters are incomplete and a caller that must not miss
// anything has to fail closed.
func (c *Counters) Lost() bool {
	return c.Dropped > 0 || c.PairOverflow > 0 || c.Missed > 0 || c.Unread
}

// Entropy is the Shannon entropy, in bits per byte, of the sampled output
// (0 with no sample). It is the plug-in estimate, which reads low for small
// samples: by about 255/(2n ln 2) bits for n uniform random bytes.
func (c *Counters) Entropy() float64 {
	return entropy(c.Bytes[:])
}

func entropy(hist []uint64) float64 {
	var total float64
	for _, n := range hist {
		total += float64(n)
	}
	if total == 0 {
		return 0
	}
	var h float64
	for _, n := range hist {
		if n > 0 {
			p := float64(n) / total
			h -= p * math.Log2(p)
		}
	}
	return h
}
