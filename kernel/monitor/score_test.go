package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEntropyEstimate(t *testing.T) {
	uniform := make([]uint64, 256)
	for i := range uniform {
		uniform[i] = 10
	}
	two := make([]uint64, 256)
	two['a'], two['b'] = 5, 5
	for _, tc := range []struct {
		name string
		hist []uint64
		want float64
	}{
		{"empty", make([]uint64, 256), 0},
		{"one value", append([]uint64{100}, make([]uint64, 255)...), 0},
		{"two values", two, 1},
		{"uniform", uniform, 8},
	} {
		if got := entropy(tc.hist); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: entropy %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestJSDivergence(t *testing.T) {
	for _, tc := range []struct {
		name string
		p, q map[uint32]uint64
		want float64
	}{
		{"same", map[uint32]uint64{1: 10, 2: 30}, map[uint32]uint64{1: 1, 2: 3}, 0},
		{"disjoint", map[uint32]uint64{1: 10}, map[uint32]uint64{2: 10}, 1},
		{"half", map[uint32]uint64{1: 1}, map[uint32]uint64{1: 1, 2: 1}, 0.311278},
		{"empty", map[uint32]uint64{}, map[uint32]uint64{1: 1}, 0},
	} {
		if got := jsDivergence(tc.p, tc.q); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("%s: JSD %v, want %v", tc.name, got, tc.want)
		}
	}
}

// run makes counters of a run that calls syscalls in the given order, as
// one task, and writes out.
func run(out []byte, nrs ...uint32) Counters {
	c := Counters{Syscalls: map[uint32]uint64{}, Pairs: map[[2]uint32]uint64{}}
	prev := uint32(PairStart)
	for _, nr := range nrs {
		c.Syscalls[nr]++
		c.Pairs[[2]uint32{prev, nr}]++
		c.TotalSyscalls++
		prev = nr
	}
	for _, b := range out {
		c.Bytes[b]++
	}
	c.BytesWritten, c.BytesSampled = uint64(len(out)), uint64(len(out))
	c.Execs = 1
	return c
}

func TestBaselineJSONDeterministic(t *testing.T) {
	text := bytes.Repeat([]byte(`{"ok":true} `), 40)
	a := run(text, 12, 9, 0, 1, 231)
	b := run(text, 12, 9, 9, 0, 0, 1, 231)
	b1, err := Learn(a, b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Learn(b, a)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(b1)
	j2, _ := json.Marshal(b2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("learning order changed the encoding:\n%s\n%s", j1, j2)
	}
	var back Baseline
	if err := json.Unmarshal(j1, &back); err != nil {
		t.Fatal(err)
	}
	j3, _ := json.Marshal(&back)
	if !bytes.Equal(j1, j3) {
		t.Errorf("round trip changed the encoding:\n%s\n%s", j1, j3)
	}
	if !slices.IsSortedFunc(back.Pairs, comparePair) || len(back.Pairs) != 7 {
		t.Errorf("pairs %v: want 7, sorted", back.Pairs)
	}
	if back.Runs != 2 || back.Max.Syscalls != 7 || back.Entropy == nil {
		t.Errorf("baseline %+v", back)
	}
}

func TestLearnRefusesBadRuns(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Counters)
	}{
		{"dropped", func(c *Counters) { c.Dropped = 1 }},
		{"missed", func(c *Counters) { c.Missed = 1 }},
		{"pair overflow", func(c *Counters) { c.PairOverflow = 1 }},
		{"killed", func(c *Counters) { c.Kills = 1 }},
		{"compat", func(c *Counters) { c.CompatSyscalls = 1 }},
		{"from poll", func(c *Counters) { c.Syscalls, c.Pairs = nil, nil }},
	} {
		c := run(nil, 0, 1)
		tc.edit(&c)
		if _, err := Learn(c); !errors.Is(err, ErrBadRun) {
			t.Errorf("%s: Learn error %v, want ErrBadRun", tc.name, err)
		}
	}
}

func TestScore(t *testing.T) {
	text := bytes.Repeat([]byte(`{"result":"fine"} `), 30)
	loop := func(n int, nrs ...uint32) []uint32 {
		var out []uint32
		for range n {
			out = append(out, nrs...)
		}
		return out
	}
	good := run(text, loop(100, 0, 1)...)
	good.CPU, good.PeakMemory = 20*time.Millisecond, 8<<20
	base, err := Learn(good, run(text, loop(120, 0, 1)...))
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(i*7 + i/256)
	}
	for _, tc := range []struct {
		name    string
		c       Counters
		deviant bool
		reason  string // substring of one reason
	}{
		{"same", run(text, loop(110, 0, 1)...), false, ""},
		{"novel syscall", run(text, append(loop(100, 0, 1), 42)...), true, "connect"},
		{"novel pair", run(text, append(loop(100, 0, 1), 1, 0, 0)...), true, "read→read"},
		{"skewed mix", run(text, append(loop(10, 0, 1), loop(190, 0)...)...), true, "Jensen"},
		{"high entropy", run(random, loop(100, 0, 1)...), true, "entropy"},
		{"too many syscalls", run(text, loop(2000, 0, 1)...), true, "syscalls 4000, more than"},
		{"more CPU", func() Counters { c := run(text, loop(100, 0, 1)...); c.CPU = 500 * time.Millisecond; return c }(), true, "CPU 500ms"},
		{"more memory", func() Counters { c := run(text, loop(100, 0, 1)...); c.PeakMemory = 100 << 20; return c }(), true, "peak memory"},
		{"forked", func() Counters { c := run(text, loop(100, 0, 1)...); c.Forks = 1; return c }(), true, "forked"},
		{"lost", func() Counters { c := run(text, loop(100, 0, 1)...); c.Dropped = 3; return c }(), true, "lost events"},
		{"unread", Counters{Unread: true}, true, "could not read"},
		{"killed", func() Counters {
			c := run(text, loop(100, 0, 1)...)
			c.Kills, c.SeccompKills = 1, []SeccompKill{{Nr: 110, Name: "getppid"}}
			return c
		}(), true, "getppid"},
	} {
		d := Score(tc.c, base)
		if d.Deviant() != tc.deviant {
			t.Errorf("%s: deviant %v (score %.2f, %v), want %v", tc.name, d.Deviant(), d.Score, d.Reasons, tc.deviant)
		}
		if tc.reason != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), tc.reason) {
			t.Errorf("%s: reasons %q lack %q", tc.name, d.Reasons, tc.reason)
		}
	}
	if d := Score(run(text, 0, 1, 42), nil); d.Deviant() {
		t.Errorf("no baseline: %+v, want only absolute checks", d)
	}
}

func TestScoreWith(t *testing.T) {
	text := bytes.Repeat([]byte(`{"result":"fine"} `), 30)
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(i*7 + i/256)
	}
	band := &Band{Min: 0, Max: 7}
	for _, tc := range []struct {
		name    string
		out     []byte
		x       Expect
		deviant bool
	}{
		{"text inside the band", text, Expect{Entropy: band}, false},
		{"random outside the band", random, Expect{Entropy: band}, true},
		{"random, nothing declared", random, Expect{}, false},
		{"sample too small to judge", random[:100], Expect{Entropy: band}, false},
	} {
		// No baseline: the declared band is judged on its own.
		d := ScoreWith(run(tc.out, 0, 1), nil, tc.x)
		if d.Deviant() != tc.deviant {
			t.Errorf("%s: deviant %v (%v), want %v", tc.name, d.Deviant(), d.Reasons, tc.deviant)
		}
	}

	// Output that could not be read back hides from a band, declared or
	// learnt; without one it does not matter.
	learnt, err := Learn(run(text, 0, 1))
	if err != nil || learnt.Entropy == nil {
		t.Fatalf("Learn: %v, %+v", err, learnt)
	}
	noBand, _ := Learn(run(nil, 0, 1))
	for _, tc := range []struct {
		name    string
		b       *Baseline
		x       Expect
		deviant bool
	}{
		{"declared band", nil, Expect{Entropy: band}, true},
		{"learnt band", learnt, Expect{}, true},
		{"no band", noBand, Expect{}, false},
	} {
		c := run(text, 0, 1)
		c.Unsampled = 2
		d := ScoreWith(c, tc.b, tc.x)
		if d.Deviant() != tc.deviant || tc.deviant && !strings.Contains(strings.Join(d.Reasons, ";"), "could not be read back") {
			t.Errorf("unsampled output, %s: deviant %v (%v), want %v", tc.name, d.Deviant(), d.Reasons, tc.deviant)
		}
	}
}

func TestSummarize(t *testing.T) {
	base, _ := Learn(run(nil, 0, 1, 231))
	f := Summarize(run([]byte("aaaa"), 0, 1, 1, 1, 42, 231), base)
	if f.Top[0].Name != "write" || f.Top[0].Count != 3 || f.DistinctSyscalls != 4 {
		t.Errorf("top %+v distinct %d", f.Top, f.DistinctSyscalls)
	}
	want := []string{"write→write", "write→connect", "connect→exit_group"} // by number
	if !slices.Equal(f.NovelPairs, want) || f.NovelPairCount != 3 {
		t.Errorf("novel pairs %v (%d), want %v", f.NovelPairs, f.NovelPairCount, want)
	}
	if f.Entropy != 0 || f.BytesWritten != 4 {
		t.Errorf("entropy %v bytes %d", f.Entropy, f.BytesWritten)
	}
}

func TestBaselineUnmarshalRejects(t *testing.T) {
	for _, tc := range []struct {
		name, json string
	}{
		{"version", `{"version":2,"arch":"x86_64","pairs":[]}`},
		{"arch", `{"version":1,"arch":"aarch64","pairs":[]}`},
		{"unsorted", `{"version":1,"arch":"x86_64","pairs":[[1,1],[0,1]]}`},
		{"duplicate", `{"version":1,"arch":"x86_64","pairs":[[0,1],[0,1]]}`},
		{"number", `{"version":1,"arch":"x86_64","pairs":[[0,4000]]}`},
		{"entropy", `{"version":1,"arch":"x86_64","pairs":[],"entropy":{"min":5,"max":9}}`},
	} {
		var b Baseline
		if err := json.Unmarshal([]byte(tc.json), &b); !errors.Is(err, ErrBadBaseline) {
			t.Errorf("%s: error %v, want ErrBadBaseline", tc.name, err)
		}
	}
	const ok = `{"version":1,"arch":"x86_64","runs":1,"syscalls":{"0":1,"1":1},"pairs":[[0,1],[65535,0]],"max":{"syscalls":2,"bytes_written":0,"forks":0,"threads":0,"execs":1}}`
	var b Baseline
	if err := json.Unmarshal([]byte(ok), &b); err != nil {
		t.Errorf("valid baseline: %v", err)
	}
	// The same, not as json.Marshal writes it: not what the ledger hashed.
	for _, tc := range []struct{ name, old, new string }{
		{"space", `"runs":1,`, `"runs": 1,`},
		{"field order", `"version":1,"arch":"x86_64"`, `"arch":"x86_64","version":1`},
		{"unknown field", `"runs":1,`, `"runs":1,"note":"x",`},
		{"key order", `{"0":1,"1":1}`, `{"1":1,"0":1}`},
	} {
		if err := json.Unmarshal([]byte(strings.Replace(ok, tc.old, tc.new, 1)), &b); !errors.Is(err, ErrBadBaseline) {
			t.Errorf("%s: error %v, want ErrBadBaseline", tc.name, err)
		}
	}
}

func FuzzBaselineUnmarshal(f *testing.F) {
	base, _ := Learn(run([]byte("hello"), 0, 1, 231))
	seed, _ := json.Marshal(base)
	f.Add(seed)
	f.Add([]byte(`{"version":1,"arch":"x86_64","pairs":[[1,1],[0,1]]}`))
	f.Add([]byte(`{"version":1,"arch":"x86_64","runs":0,"syscalls":{},"pairs":null,"max":{"syscalls":0,"bytes_written":0,"forks":0,"threads":0,"execs":0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Baseline
		if json.Unmarshal(data, &b) != nil {
			return
		}
		// A baseline that decodes is canonical: it encodes to the very
		// bytes it was decoded from, and scoring with it does not panic.
		again, err := json.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded %s, which encodes as %s", data, again)
		}
		Score(run([]byte("x"), 0, 1, 1), &b)
	})
}

// tasks merges runs of several tasks (threads) into one cell's counters.
func tasks(runs ...Counters) Counters {
	c := Counters{Syscalls: map[uint32]uint64{}, Pairs: map[[2]uint32]uint64{}}
	for _, r := range runs {
		for nr, n := range r.Syscalls {
			c.Syscalls[nr] += n
		}
		for p, n := range r.Pairs {
			c.Pairs[p] += n
		}
		c.TotalSyscalls += r.TotalSyscalls
	}
	return c
}

func TestRuntimeWeight(t *testing.T) {
	// read 0, write 1, nanosleep 35, getpid 39, getppid 110 and getrusage
	// 98 (extras the contract grants), connect 42 (another, never made in
	// the baseline), tgkill 234, rt_sigreturn 15
	base, err := Learn(run(nil, 0, 110, 1), run(nil, 0, 110, 110, 98, 1))
	if err != nil {
		t.Fatal(err)
	}
	runtime := map[uint32]bool{0: true, 1: true, 35: true, 39: true, 234: true, 15: true}
	for _, tc := range []struct {
		name    string
		c       Counters
		deviant bool
	}{
		// Go preempting the getppid loop: sysmon's thread signals, the
		// loop's thread returns from the handler between two getppid.
		// Novel runtime syscalls and pairs, capped.
		{"preempted", tasks(run(nil, 0, 110, 15, 110, 1), run(nil, 35, 39, 234, 35)), false},
		// Runtime syscalls in a new order among themselves.
		{"runtime order", run(nil, 0, 1, 0, 110, 1), false},
		// A novel syscall the cell declared, not the runtime's.
		{"new extra", run(nil, 0, 110, 42, 110, 1), true},
		// Known syscalls, but an extra in a new place beside a runtime
		// one: the cell's own doing, each pair weighs 1.
		{"extra in a new order", run(nil, 0, 110, 0, 98, 0, 1), true},
		// Preempted and a new extra: the extra alone decides.
		{"both", tasks(run(nil, 0, 110, 15, 110, 42, 1), run(nil, 35, 39, 234, 35)), true},
	} {
		d := ScoreWith(tc.c, base, Expect{Runtime: runtime})
		if d.Deviant() != tc.deviant {
			t.Errorf("%s: score %.2f (%v), want deviant %v", tc.name, d.Score, d.Reasons, tc.deviant)
		}
		if d.BaselineRuns != 2 {
			t.Errorf("%s: BaselineRuns %d, want 2", tc.name, d.BaselineRuns)
		}
	}
}

// Refinement teaches the mix and the maxima, never what the baseline
// lacks: novelty too light to deviate must not become the baseline's own.
func TestRefine(t *testing.T) {
	base, err := Learn(run(nil, 0, 110, 1), run(nil, 0, 110, 110, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    Counters
		ok   bool
	}{
		{"covered", run(nil, 0, 110, 110, 110, 1), true},
		{"novel pair of runtime syscalls", run(nil, 0, 1, 0, 110, 1), false},
		{"novel syscall", run(nil, 0, 110, 98, 1), false},
		{"lost events", func() Counters { c := run(nil, 0, 110, 1); c.Missed = 1; return c }(), false},
	} {
		b := base.Clone()
		err := b.Refine(tc.c)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Refine: %v, want ok %v", tc.name, err, tc.ok)
		}
		switch {
		case tc.ok && (b.Runs != base.Runs+1 || b.Syscalls[110] != base.Syscalls[110]+3 || b.Max.Syscalls != 5):
			t.Errorf("%s: refined to %+v", tc.name, b)
		case !tc.ok && (b.Runs != base.Runs || len(b.Pairs) != len(base.Pairs) || len(b.Syscalls) != len(base.Syscalls)):
			t.Errorf("%s: refused, but the baseline changed: %+v", tc.name, b)
		}
	}
}
