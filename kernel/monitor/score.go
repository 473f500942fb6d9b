package monitor

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Thresholds of Score. They are first guesses, to be tuned on real cells.
const (
	// DivergenceThreshold is the Jensen–Shannon divergence (bits, 0..1)
	// of the syscall distribution above which a run deviates.
	DivergenceThreshold = 0.2
	// MinDivergenceSyscalls is the smallest run whose distribution is
	// compared: fewer syscalls say too little.
	MinDivergenceSyscalls = 100
	// EntropySlack widens the baseline's entropy band on both sides, in
	// bits per byte.
	EntropySlack = 0.5
	// ResourceFactor: syscalls and bytes written may reach this multiple
	// of the baseline's maximum (plus a small allowance) before deviating.
	ResourceFactor = 2
	// CPUAllowance and MemoryAllowance are added to twice the baseline's
	// maximum CPU time and peak memory: small cells vary by more than a
	// factor between runs on a loaded machine.
	CPUAllowance    = 100 * time.Millisecond
	MemoryAllowance = 16 << 20
	// RuntimeWeight is what a novel runtime syscall or pair adds (see
	// Expect.Runtime), and RuntimeCap the most they add together: a
	// runtime's first preemption signal (tgkill, getpid, rt_sigreturn and
	// four or five new pairs) must not deviate on its own, but it adds to
	// other evidence.
	RuntimeWeight = 0.1
	RuntimeCap    = 0.5
	// weightSevere is the score of a lost event, a seccomp kill or an ia32
	// syscall: each alone is a deviation, whatever the baseline.
	weightSevere = 10
)

// Deviation says how far a run is from its baseline, and why.
type Deviation struct {
	// Score is 0 for a run like its baseline; 1 or more is a deviation.
	// Each novel syscall or pair adds 1 (RuntimeWeight for runtime noise,
	// see Expect.Runtime), a divergence above the threshold adds
	// divergence/threshold, an entropy outside a band, output that could
	// not be sampled against a band, or a resource beyond the baseline
	// adds 1, and lost events, seccomp kills and ia32 syscalls add 10
	// each.
	Score         float64  `json:"score"`
	NovelPairs    int      `json:"novel_pairs"`
	NovelSyscalls []string `json:"novel_syscalls,omitempty"`
	Divergence    float64  `json:"js_divergence"`
	Entropy       float64  `json:"entropy_bits_per_byte"`
	Reasons       []string `json:"reasons,omitempty"`
	// BaselineRuns are the runs of the baseline the run was judged
	// against; 0 without one (then only the contract was judged, and the
	// run must not refine a baseline it was never compared with).
	BaselineRuns int `json:"-"`
}

// Deviant reports whether the run deviates (Score >= 1).
func (d Deviation) Deviant() bool { return d.Score >= 1 }

func (d *Deviation) add(w float64, format string, args ...any) {
	d.Score += w
	d.Reasons = append(d.Reasons, fmt.Sprintf(format, args...))
}

// Expect is what a run is judged against besides its baseline.
type Expect struct {
	// Entropy is the declared band of output entropy in bits per byte
	// (manifest monitor.entropy); nil if none. It is judged with or without
	// a baseline and, unlike the learned band, gets no slack: the author
	// chose it.
	Entropy *Band
	// Runtime are the syscalls any cell's runtime makes at moments that
	// depend on timing rather than on the input (the seccomp base set: Go's
	// preemption signals, scheduler, garbage collector, allocator). A novel
	// one weighs RuntimeWeight instead of 1, and so does a novel pair whose
	// both sides are runtime syscalls or a thread start, or that enters or
	// leaves a signal handler's return (rt_sigreturn, restart_syscall: a
	// signal can arrive after any syscall). Together they add at most
	// RuntimeCap: alone they are noise, with other evidence they count. A
	// pair of a runtime syscall with one the contract grants beyond the
	// base weighs 1: that order is the cell's own doing.
	Runtime map[uint32]bool
}

// Syscalls a signal puts next to any other (x86_64 numbers).
const (
	nrRtSigreturn    = 15
	nrRestartSyscall = 219
)

// Score compares a run (counters from Snapshot or Close) with its
// baseline. With a nil baseline only what is wrong for any cell counts:
// lost events, seccomp kills, ia32 syscalls.
func Score(c Counters, b *Baseline) Deviation { return ScoreWith(c, b, Expect{}) }

// ScoreWith is Score with expectations beyond the baseline (see Expect).
func ScoreWith(c Counters, b *Baseline, x Expect) Deviation {
	d := Deviation{Entropy: c.Entropy()}
	switch {
	case c.Unread:
		d.add(weightSevere, "the monitor could not read the cell's counters: the fingerprint is missing")
	case c.Lost():
		d.add(weightSevere, "monitor lost events (dropped %d, pair overflow %d, missed %d): the fingerprint is incomplete",
			c.Dropped, c.PairOverflow, c.Missed)
	}
	if c.Kills > 0 {
		names := make([]string, 0, len(c.SeccompKills))
		for _, k := range c.SeccompKills {
			names = append(names, k.Name)
		}
		d.add(weightSevere, "seccomp killed %d task(s) for calling %s", c.Kills, strings.Join(names, ", "))
	}
	if c.CompatSyscalls > 0 {
		d.add(weightSevere, "%d ia32 (int 0x80) syscalls", c.CompatSyscalls)
	}
	if e := x.Entropy; e != nil && c.BytesSampled >= MinEntropySample && (d.Entropy < e.Min || d.Entropy > e.Max) {
		d.add(1, "output entropy %.2f bits/byte outside the declared band %.2f–%.2f (monitor.entropy)", d.Entropy, e.Min, e.Max)
	}
	// Output is sampled after the kernel copied it, so it is resident: a
	// piece that cannot be read back was unmapped or swapped out at once,
	// which hides it from a band that was declared or learnt. (A low
	// sampled/written ratio is no sign of that: a long write is sampled
	// 1 KiB at random offsets, however long it is.)
	if c.Unsampled > 0 && (x.Entropy != nil || b != nil && b.Entropy != nil) {
		d.add(1, "%d piece(s) of output could not be read back for sampling, so its entropy cannot be checked against the band", c.Unsampled)
	}
	if b == nil {
		return d
	}
	d.BaselineRuns = b.Runs

	// Runtime novelty is weighed as it comes and capped in total.
	var runtimeSum float64
	runtimeLike := func(nr uint32) bool { return nr == PairStart || x.Runtime[nr] }
	interrupt := func(nr uint32) bool { return nr == nrRtSigreturn || nr == nrRestartSyscall }
	low := func(w float64) float64 {
		w = min(w, RuntimeCap-runtimeSum)
		runtimeSum += w
		return w
	}
	weightSyscall := func(nr uint32) float64 {
		if runtimeLike(nr) {
			return low(RuntimeWeight)
		}
		return 1
	}
	weightPair := func(p [2]uint32) float64 {
		if interrupt(p[0]) || interrupt(p[1]) || runtimeLike(p[0]) && runtimeLike(p[1]) {
			return low(RuntimeWeight)
		}
		return 1
	}
	describe := func(n int, w float64) string {
		if w == float64(n) {
			return strconv.Itoa(n)
		}
		return fmt.Sprintf("%d (weighing %.2g: runtime noise weighs %.2g, %.2g in all)", n, w, RuntimeWeight, RuntimeCap)
	}

	var newSys []uint32
	var wSys float64
	for nr := range c.Syscalls {
		if b.Syscalls[nr] == 0 {
			newSys = append(newSys, nr)
			wSys += weightSyscall(nr)
		}
	}
	slices.Sort(newSys)
	for _, nr := range newSys {
		d.NovelSyscalls = append(d.NovelSyscalls, SyscallName(nr))
	}
	if len(newSys) > 0 {
		d.add(wSys, "%s syscall(s) never seen in %d baseline run(s): %s",
			describe(len(newSys), wSys), b.Runs, strings.Join(d.NovelSyscalls, ", "))
	}

	novel := b.novelPairs(c)
	d.NovelPairs = len(novel)
	if len(novel) > 0 {
		var w float64
		for _, p := range novel {
			w += weightPair(p)
		}
		names := make([]string, 0, 5)
		for _, p := range novel[:min(len(novel), 5)] {
			names = append(names, pairName(p))
		}
		more := ""
		if len(novel) > 5 {
			more = ", …"
		}
		d.add(w, "%s syscall pair(s) never seen in the baseline: %s%s",
			describe(len(novel), w), strings.Join(names, ", "), more)
	}

	if c.TotalSyscalls >= MinDivergenceSyscalls && len(b.Syscalls) > 0 {
		d.Divergence = jsDivergence(c.Syscalls, b.Syscalls)
		if d.Divergence > DivergenceThreshold {
			d.add(d.Divergence/DivergenceThreshold, "syscall mix diverges from the baseline (Jensen–Shannon %.3f bits > %.2f)",
				d.Divergence, DivergenceThreshold)
		}
	}

	if b.Entropy != nil && c.BytesSampled >= MinEntropySample {
		lo, hi := b.Entropy.Min-EntropySlack, b.Entropy.Max+EntropySlack
		if d.Entropy < lo || d.Entropy > hi {
			d.add(1, "output entropy %.2f bits/byte outside the baseline's %.2f–%.2f (±%.1f)",
				d.Entropy, b.Entropy.Min, b.Entropy.Max, EntropySlack)
		}
	}

	num := func(v uint64) string { return strconv.FormatUint(v, 10) }
	ns := func(v uint64) string { return time.Duration(v).Round(time.Millisecond).String() }
	for _, r := range []struct {
		what       string
		got, max   uint64
		allow      uint64
		volumeLike bool
		// cgroup figures: skipped when this run or the baseline lacks them
		optional bool
		show     func(uint64) string
	}{
		{"syscalls", c.TotalSyscalls, b.Max.Syscalls, 1000, true, false, num},
		{"bytes written", c.BytesWritten, b.Max.BytesWritten, 4096, true, false, num},
		{"threads", c.Threads, b.Max.Threads, 4, true, false, num},
		{"processes forked", c.Forks, b.Max.Forks, 0, false, false, num},
		{"execs", c.Execs, b.Max.Execs, 0, false, false, num},
		{"CPU", uint64(max(c.CPU, 0)), b.Max.CPUNS, uint64(CPUAllowance), true, true, ns},
		{"peak memory bytes", c.PeakMemory, b.Max.PeakMemory, MemoryAllowance, true, true, num},
	} {
		if r.optional && (r.got == 0 || r.max == 0) {
			continue
		}
		limit := r.max + r.allow
		if r.volumeLike {
			limit = ResourceFactor*r.max + r.allow
		}
		if r.got > limit {
			d.add(1, "%s %s, more than the baseline allows (%s, maximum seen %s)", r.what, r.show(r.got), r.show(limit), r.show(r.max))
		}
	}
	return d
}

// jsDivergence is the Jensen–Shannon divergence, in bits, of two count
// distributions.
func jsDivergence(p, q map[uint32]uint64) float64 {
	var tp, tq float64
	for _, n := range p {
		tp += float64(n)
	}
	for _, n := range q {
		tq += float64(n)
	}
	if tp == 0 || tq == 0 {
		return 0
	}
	var js float64
	term := func(a, m float64) float64 {
		if a == 0 {
			return 0
		}
		return a * math.Log2(a/m)
	}
	seen := make(map[uint32]bool, len(p)+len(q))
	for _, dist := range []map[uint32]uint64{p, q} {
		for nr := range dist {
			if seen[nr] {
				continue
			}
			seen[nr] = true
			a, b := float64(p[nr])/tp, float64(q[nr])/tq
			m := (a + b) / 2
			js += (term(a, m) + term(b, m)) / 2
		}
	}
	return max(0, js)
}
