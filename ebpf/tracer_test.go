package ebpf

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/trustcells/tcc/internal/testutil"
)

func load(t *testing.T, cfg Config) *Tracer {
	t.Helper()
	testutil.RequireRoot(t)
	tr, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// maxVerified bounds what the verifier may walk per program: a fifth of
// the kernel's limit (1M), so that a change that makes verification explode
// shows here before an older kernel, which prunes less, refuses the load.
const maxVerified = 200_000

func TestVerifierCost(t *testing.T) {
	tr := load(t, Config{})
	for name, p := range tr.programs() {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			t.Fatalf("%s: the kernel does not report verified instructions", name)
		}
		size, _ := info.JitedSize()
		t.Logf("%s: %d instructions verified, %d bytes JITed", name, n, size)
		if n > maxVerified {
			t.Errorf("%s: %d instructions verified, want at most %d", name, n, maxVerified)
		}
	}
}

// A cell whose wipe fails keeps its slot out of use only until a later
// AddCell wipes it clean; it must not leak the slot for good.
func TestResidueSlotReclaimed(t *testing.T) {
	tr := load(t, Config{MaxCells: 1, PairsPerCell: 16})
	const first, second = 1 << 40, 1<<40 + 1 // any ids: no task is in them

	c, err := tr.AddCell(first, CellOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A writer that outlives the wipe: a pair appears after every wipe.
	tr.afterWipe = func(c *Cell) {
		if err := tr.objs.TccPairs.Put(tccPairKey{Cgid: c.id, Prev: PairStart, Nr: 1}, uint64(1)); err != nil {
			t.Fatal(err)
		}
	}
	var re *ResidueError
	if err := c.Remove(); !errors.As(err, &re) {
		t.Fatalf("Remove with a late writer: %v, want a *ResidueError", err)
	}
	tr.afterWipe = nil

	if _, err := tr.AddCell(second, CellOptions{}); err != nil {
		t.Fatalf("AddCell after a failed wipe, with MaxCells 1: %v, want the slot wiped and reused", err)
	}
	if left, err := tr.Residue(first); err != nil || len(left) != 0 {
		t.Errorf("Residue(first) after the slot was reclaimed = %v, %v; want none", left, err)
	}
}

// Detach takes the links away and Attach brings new ones, leaving the
// programs and maps loaded; both are idempotent, and Close leaves no link.
func TestAttachDetach(t *testing.T) {
	tr := load(t, Config{MaxCells: 1, PairsPerCell: 16})
	links := func(want int) []link.ID {
		t.Helper()
		ids, err := tr.IDs()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids.Links) != want || tr.Attached() != (want > 0) {
			t.Fatalf("links %v, attached %v; want %d links", ids.Links, tr.Attached(), want)
		}
		for _, id := range ids.Links {
			if !linkListed(t, id) {
				t.Errorf("link %d not listed by the kernel", id)
			}
		}
		return ids.Links
	}
	gone := func(ids []link.ID) {
		t.Helper()
		for _, id := range ids {
			if linkListed(t, id) {
				t.Errorf("link %d still listed by the kernel", id)
			}
		}
	}

	first := links(5) // Load attaches
	for range 2 {
		if err := tr.Detach(); err != nil {
			t.Fatalf("Detach: %v", err)
		}
		links(0)
		gone(first)
	}
	if err := tr.Attach(); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	second := links(5)
	if err := tr.Attach(); err != nil {
		t.Fatalf("Attach again: %v", err)
	}
	if again := links(5); !slices.Equal(again, second) {
		t.Errorf("Attach when attached replaced the links: %v, then %v", second, again)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	gone(second)
	if err := tr.Attach(); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close: %v, want ErrClosed", err)
	}
	if err := tr.Detach(); !errors.Is(err, ErrClosed) {
		t.Errorf("Detach after Close: %v, want ErrClosed", err)
	}
}

// linkListed reports whether the kernel lists a link with this id.
func linkListed(t *testing.T, id link.ID) bool {
	t.Helper()
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		if it.ID == id {
			return true
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}
