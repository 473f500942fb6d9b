package monitor

import (
	"cmp"
	"slices"
)

// Fingerprint is a readable summary of one run, as stored in an audit record.
type Fingerprint struct {
	Syscalls         uint64         `json:"syscalls"`
	DistinctSyscalls int            `json:"distinct_syscalls"`
	Top              []SyscallCount `json:"top"`
	DistinctPairs    int            `json:"distinct_pairs"`
	// NovelPairs are the pairs missing from the baseline (nil without
	// one), named "prev→next", in number order, at most MaxNovelListed.
	NovelPairs     []string `json:"novel_pairs,omitempty"`
	NovelPairCount int      `json:"novel_pair_count"`
	Entropy        float64  `json:"entropy_bits_per_byte"`
	BytesWritten   uint64   `json:"bytes_written"`
	BytesSampled   uint64   `json:"bytes_sampled"`
	Forks          uint64   `json:"forks"`
	Threads        uint64   `json:"threads"`
	Execs          uint64   `json:"execs"`
	Exits          uint64   `json:"exits"`
	// CPUNS and PeakMemory are from the sandbox's cgroups (0 if unknown).
	CPUNS        uint64        `json:"cpu_ns"`
	PeakMemory   uint64        `json:"peak_memory"`
	SeccompKills []SeccompKill `json:"seccomp_kills,omitempty"`
	Compat       uint64        `json:"compat_syscalls,omitempty"`
	Lost         bool          `json:"lost,omitempty"`
}

// SyscallCount is one syscall's count in a run.
type SyscallCount struct {
	Name  string `json:"name"`
	Nr    uint32 `json:"nr"`
	Count uint64 `json:"count"`
}

const (
	// TopSyscalls is how many syscalls a Fingerprint lists.
	TopSyscalls = 10
	// MaxNovelListed is how many novel pairs a Fingerprint names.
	MaxNovelListed = 20
)

// Summarize condenses counters from Snapshot or Close; b may be nil.
func Summarize(c Counters, b *Baseline) Fingerprint {
	f := Fingerprint{
		Syscalls:         c.TotalSyscalls,
		DistinctSyscalls: len(c.Syscalls),
		DistinctPairs:    len(c.Pairs),
		Entropy:          c.Entropy(),
		BytesWritten:     c.BytesWritten,
		BytesSampled:     c.BytesSampled,
		Forks:            c.Forks,
		Threads:          c.Threads,
		Execs:            c.Execs,
		Exits:            c.Exits,
		CPUNS:            uint64(max(c.CPU, 0)),
		PeakMemory:       c.PeakMemory,
		SeccompKills:     c.SeccompKills,
		Compat:           c.CompatSyscalls,
		Lost:             c.Lost(),
	}
	for nr, n := range c.Syscalls {
		f.Top = append(f.Top, SyscallCount{Name: SyscallName(nr), Nr: nr, Count: n})
	}
	slices.SortFunc(f.Top, func(a, b SyscallCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Nr, b.Nr))
	})
	f.Top = f.Top[:min(len(f.Top), TopSyscalls)]
	if b != nil {
		novel := b.novelPairs(c)
		f.NovelPairCount = len(novel)
		for _, p := range novel[:min(len(novel), MaxNovelListed)] {
			f.NovelPairs = append(f.NovelPairs, pairName(p))
		}
	}
	return f
}
