package daemon

import (
	"context"
	"fmt"
	"testing"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
)

// counters of one task that calls nrs in order.
func counters(nrs ...uint32) monitor.Counters {
	c := monitor.Counters{Syscalls: map[uint32]uint64{}, Pairs: map[[2]uint32]uint64{}}
	prev := uint32(monitor.PairStart)
	for _, nr := range nrs {
		c.Syscalls[nr]++
		c.Pairs[[2]uint32{prev, nr}]++
		c.TotalSyscalls++
		prev = nr
	}
	return c
}

// What a call may teach its identity's baseline (the cache holds it; no
// ledger is reached below refineEvery merges).
func TestLearn(t *testing.T) {
	const id = manifest.Identity("sha256:0000000000000000000000000000000000000000000000000000000000000001")
	cell := &kernel.Cell{Identity: id, Manifest: &manifest.Manifest{Name: "c"}}
	ok := &outcome.Outcome{Verdict: outcome.OK}
	base, err := monitor.Learn(counters(0, 110, 1), counters(0, 110, 110, 1))
	if err != nil {
		t.Fatal(err)
	}
	judged := monitor.Deviation{BaselineRuns: base.Runs}
	for _, tc := range []struct {
		name  string
		c     monitor.Counters
		dev   monitor.Deviation
		learn bool
	}{
		{"covered, judged", counters(0, 110, 110, 110, 1), judged, true},
		// Scored against no baseline (it had none yet when the call began):
		// never compared with what it would teach.
		{"not judged", counters(0, 110, 110, 110, 1), monitor.Deviation{}, false},
		{"deviant", counters(0, 110, 110, 110, 1), monitor.Deviation{Score: 1, BaselineRuns: base.Runs}, false},
		// Novel pairs too light to deviate (runtime noise, or an attacker's
		// runtime-looking order) are not learnt.
		{"novel runtime pairs", counters(0, 1, 0, 110, 1), monitor.Deviation{Score: 0.2, BaselineRuns: base.Runs}, false},
	} {
		d := &Daemon{}
		d.mon.add(id, &profileEntry{base: base, probation: base.Runs})
		c := tc.c
		d.learn(context.Background(), cell, ok, &c, tc.dev)
		e, _ := d.mon.get(id)
		if learnt := e.base.Runs != base.Runs; learnt != tc.learn {
			t.Errorf("%s: learnt %v (runs %d, pending %d), want %v", tc.name, learnt, e.base.Runs, e.pending, tc.learn)
		}
		if base.Runs != 2 {
			t.Fatalf("%s: the baseline in use was changed in place", tc.name)
		}
	}
}

// The cache keeps at most maxProfiles baselines, never dropping one whose
// refinements are not recorded yet.
func TestProfileCacheBounded(t *testing.T) {
	var s monitorState
	b, _ := monitor.Learn(counters(0, 1))
	idOf := func(i int) manifest.Identity { return manifest.Identity(fmt.Sprintf("sha256:%064x", i)) }
	s.add(idOf(0), &profileEntry{base: b, pending: 1})
	for i := 1; i < maxProfiles; i++ {
		s.add(idOf(i), &profileEntry{base: b})
	}
	s.get(idOf(1))
	s.add(idOf(maxProfiles), &profileEntry{base: b}) // one too many
	if _, ok := s.cache[idOf(2)]; ok {
		t.Errorf("the least recently used baseline is still cached")
	}
	if _, ok := s.cache[idOf(1)]; !ok {
		t.Errorf("a recently used baseline was evicted")
	}
	for i := maxProfiles + 1; i < 3*maxProfiles; i++ {
		s.add(idOf(i), &profileEntry{base: b})
	}
	if len(s.cache) != maxProfiles {
		t.Errorf("%d baselines cached, want %d", len(s.cache), maxProfiles)
	}
	if _, ok := s.cache[idOf(0)]; !ok {
		t.Errorf("a baseline with unrecorded refinements was evicted")
	}
}
