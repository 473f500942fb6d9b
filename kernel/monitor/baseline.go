package monitor

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/ebpf"
)

// BaselineVersion is the version of the Baseline encoding.
const BaselineVersion = 1

// MinEntropySample is the smallest byte sample whose entropy a baseline
// learns or a score judges: below it the estimate is mostly noise.
const MinEntropySample = 256

// Baseline is what a cell's good runs looked like. Its JSON encoding is
// deterministic (sorted maps and pairs), so the ledger can hash it.
type Baseline struct {
	Version int    `json:"version"`
	Arch    string `json:"arch"`
	Runs    int    `json:"runs"`
	// Syscalls sums the runs' syscall counts: the frequency distribution.
	Syscalls map[uint32]uint64 `json:"syscalls"`
	// Pairs are the syscall pairs seen in any run, sorted.
	Pairs [][2]uint32 `json:"pairs"`
	// Entropy is the band of output entropy over the runs that sampled
	// at least MinEntropySample bytes; nil if none did.
	Entropy *Band `json:"entropy,omitempty"`
	// Max holds the largest of each resource over the runs.
	Max Resources `json:"max"`
}

// Band is a closed interval of entropy, in bits per byte: the contract's
// own type, so a declared band and a learnt one are the same thing.
type Band = manifest.Band

// Resources are the per-run quantities a baseline bounds.
type Resources struct {
	Syscalls     uint64 `json:"syscalls"`
	BytesWritten uint64 `json:"bytes_written"`
	Forks        uint64 `json:"forks"`
	Threads      uint64 `json:"threads"`
	Execs        uint64 `json:"execs"`
	// CPUNS and PeakMemory are the cell's cgroup CPU time and peak memory
	// (0 when the runs did not report them).
	CPUNS      uint64 `json:"cpu_ns,omitempty"`
	PeakMemory uint64 `json:"peak_memory,omitempty"`
}

// ErrBadRun means counters cannot teach a baseline.
var ErrBadRun = errors.New("run cannot be learned")

// Learn builds a baseline from the counters of good runs.
func Learn(runs ...Counters) (*Baseline, error) {
	b := &Baseline{Version: BaselineVersion, Arch: "x86_64", Syscalls: map[uint32]uint64{}}
	for i, c := range runs {
		if err := b.Merge(c); err != nil {
			return nil, fmt.Errorf("learn from run %d: %w", i, err)
		}
	}
	return b, nil
}

// Merge adds one good run. A run that lost events, was killed by seccomp
// or made ia32 syscalls is refused (ErrBadRun), as are counters from Poll,
// which carry no histograms.
func (b *Baseline) Merge(c Counters) error {
	switch {
	case c.Lost():
		return fmt.Errorf("%w: it lost events (dropped %d, pair overflow %d, missed %d)",
			ErrBadRun, c.Dropped, c.PairOverflow, c.Missed)
	case c.Kills > 0:
		return fmt.Errorf("%w: seccomp killed %d of its tasks", ErrBadRun, c.Kills)
	case c.CompatSyscalls > 0:
		return fmt.Errorf("%w: it made %d ia32 syscalls", ErrBadRun, c.CompatSyscalls)
	case c.TotalSyscalls > 0 && c.Syscalls == nil:
		return fmt.Errorf("%w: counters without histograms (from Poll, not Snapshot or Close)", ErrBadRun)
	}
	if b.Syscalls == nil {
		b.Syscalls = map[uint32]uint64{}
	}
	if b.Version == 0 {
		b.Version, b.Arch = BaselineVersion, "x86_64"
	}
	b.Runs++
	for nr, n := range c.Syscalls {
		b.Syscalls[nr] += n
	}
	for p := range c.Pairs {
		if i, ok := slices.BinarySearchFunc(b.Pairs, p, comparePair); !ok {
			b.Pairs = slices.Insert(b.Pairs, i, p)
		}
	}
	if c.BytesSampled >= MinEntropySample {
		e := c.Entropy()
		if b.Entropy == nil {
			b.Entropy = &Band{Min: e, Max: e}
		}
		b.Entropy.Min, b.Entropy.Max = min(b.Entropy.Min, e), max(b.Entropy.Max, e)
	}
	m := &b.Max
	m.Syscalls = max(m.Syscalls, c.TotalSyscalls)
	m.BytesWritten = max(m.BytesWritten, c.BytesWritten)
	m.Forks = max(m.Forks, c.Forks)
	m.Threads = max(m.Threads, c.Threads)
	m.Execs = max(m.Execs, c.Execs)
	m.CPUNS = max(m.CPUNS, uint64(max(c.CPU, 0)))
	m.PeakMemory = max(m.PeakMemory, c.PeakMemory)
	return nil
}

// ErrNovel means a run did what its baseline never saw.
var ErrNovel = errors.New("run is not covered by the baseline")

// Refine merges a later good run into the baseline, like Merge, but only
// one the baseline already covers: every syscall and pair of the run must
// be in it (ErrNovel otherwise). Refinement then learns the syscall mix,
// the entropy band and the resource maxima, never a new syscall or pair:
// novelty that scored too little to deviate (runtime noise, capped) must
// not become the baseline's own.
func (b *Baseline) Refine(c Counters) error {
	for nr := range c.Syscalls {
		if b.Syscalls[nr] == 0 {
			return fmt.Errorf("%w: syscall %s", ErrNovel, SyscallName(nr))
		}
	}
	if novel := b.novelPairs(c); len(novel) > 0 {
		return fmt.Errorf("%w: %d syscall pair(s), first %s", ErrNovel, len(novel), pairName(novel[0]))
	}
	return b.Merge(c)
}

// Clone returns a deep copy, so that a baseline in use by running calls is
// never changed under them: refine a clone and swap it in.
func (b *Baseline) Clone() *Baseline {
	c := *b
	c.Syscalls = maps.Clone(b.Syscalls)
	c.Pairs = slices.Clone(b.Pairs)
	if b.Entropy != nil {
		e := *b.Entropy
		c.Entropy = &e
	}
	return &c
}

func comparePair(a, b [2]uint32) int {
	return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
}

func (b *Baseline) knows(p [2]uint32) bool {
	_, ok := slices.BinarySearchFunc(b.Pairs, p, comparePair)
	return ok
}

// novelPairs returns c's pairs missing from b, sorted.
func (b *Baseline) novelPairs(c Counters) [][2]uint32 {
	var novel [][2]uint32
	for p := range c.Pairs {
		if !b.knows(p) {
			novel = append(novel, p)
		}
	}
	slices.SortFunc(novel, comparePair)
	return novel
}

// ErrBadBaseline means a decoded baseline is malformed.
var ErrBadBaseline = errors.New("malformed baseline")

// UnmarshalJSON decodes a baseline and checks it: a known version and
// arch, pairs sorted without duplicates and numbers in range, a sane
// entropy band, and the canonical encoding (what json.Marshal makes of it,
// byte for byte, which is what the ledger hashes): a baseline that decodes
// re-encodes to the same bytes.
func (b *Baseline) UnmarshalJSON(data []byte) error {
	type plain Baseline
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBaseline, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Version != BaselineVersion:
		return bad("version %d, want %d", p.Version, BaselineVersion)
	case p.Arch != "x86_64":
		return bad("arch %q, want x86_64", p.Arch)
	case p.Entropy != nil && !(0 <= p.Entropy.Min && p.Entropy.Min <= p.Entropy.Max && p.Entropy.Max <= 8):
		return bad("entropy band %v–%v outside 0–8 bits", p.Entropy.Min, p.Entropy.Max)
	}
	for i, pair := range p.Pairs {
		if i > 0 && comparePair(p.Pairs[i-1], pair) >= 0 {
			return bad("pairs[%d] %v not sorted after %v", i, pair, p.Pairs[i-1])
		}
		for _, nr := range pair {
			if nr >= ebpf.NrSlots && nr != PairStart && nr != NrOther {
				return bad("pairs[%d] has syscall number %d", i, nr)
			}
		}
	}
	canon, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if !bytes.Equal(canon, data) {
		return bad("not in canonical form (compact, fields in order, no unknown fields, sorted keys)")
	}
	*b = Baseline(p)
	return nil
}
