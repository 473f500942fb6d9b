package attack

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// These tests run on the host, so they call only functions that probe
// nothing: the guard's decision, result bookkeeping and the workloads that
// merely compute. No attack runs here.

func TestCheckPIDNamespace(t *testing.T) {
	tests := []struct {
		pid, ppid int
		proc      string
		want      bool
		why       string
	}{
		{1, 0, "", true, ""},
		{1, 0, "1", true, ""},
		{1, 0, "4242", false, "/proc belongs to another pid namespace"},
		{4242, 1, "", false, "pid is 4242"},
		{1, 7, "", false, "parent pid is 7"},
		{2, 0, "2", false, "pid is 2"},
	}
	for _, tt := range tests {
		got, why := checkPIDNamespace(tt.pid, tt.ppid, tt.proc)
		if got != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("checkPIDNamespace(%d, %d, %q) = %v, %q; want %v, %q", tt.pid, tt.ppid, tt.proc, got, why, tt.want, tt.why)
		}
	}
}

func TestHostIsRefused(t *testing.T) {
	// A test binary is never PID 1 of its own namespace.
	if ok, why := freshPIDNamespace(); ok {
		t.Fatalf("freshPIDNamespace() = true on the host (%s)", why)
	}
}

func TestErrnoName(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "EPERM"},
		{fmt.Errorf("open: %w", syscall.ENOENT), "ENOENT"},
		{syscall.Errno(4000), "errno 4000"},
		{timeoutErr{}, "ETIMEDOUT"},
		{fmt.Errorf("plain"), "error"},
	}
	for _, tt := range tests {
		if got := errnoName(tt.err); got != tt.want {
			t.Errorf("errnoName(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func TestSummarize(t *testing.T) {
	tests := []struct {
		name        string
		probes      []Probe
		wantBlocked bool
		wantErrno   string
		wantDetail  string
	}{
		{"all refused", []Probe{{Target: "a", Errno: "EPERM"}, {Target: "b", Errno: "ENOENT"}, {Target: "c", Errno: "EPERM"}}, true, "ENOENT,EPERM", "all 3 probes refused"},
		{"one allowed", []Probe{{Target: "a", Errno: "EPERM"}, {Target: "b", Allowed: true}}, false, "EPERM", "allowed: b"},
		{"none", nil, true, "", "all 0 probes refused"},
	}
	for _, tt := range tests {
		r := Result{Probes: tt.probes}
		summarize(&r)
		if r.Blocked != tt.wantBlocked || r.Errno != tt.wantErrno || r.Detail != tt.wantDetail {
			t.Errorf("%s: got blocked %v, errno %q, detail %q; want %v, %q, %q", tt.name, r.Blocked, r.Errno, r.Detail, tt.wantBlocked, tt.wantErrno, tt.wantDetail)
		}
	}
}

func TestRegistry(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) || len(names) < 25 {
		t.Errorf("Names() = %v: want at least 25, sorted", names)
	}
	for _, n := range names {
		if Claim(n) == "" {
			t.Errorf("attack %s has no claim", n)
		}
	}
}

func TestGetppidN(t *testing.T) {
	r, err := getppidN(Input{N: 5})
	if err != nil || r.Count != 5 || r.Detail != "called getppid 5 times" {
		t.Errorf("getppidN(5) = %+v, %v", r, err)
	}
	if _, err := getppidN(Input{N: 100_000_001}); err == nil {
		t.Error("getppidN accepted n over the cap")
	}
}

func TestBurstOrdinary(t *testing.T) {
	r, err := burst(Input{})
	if err != nil || r.Detail != "ordinary run: ok" || r.Count != 0 {
		t.Errorf("burst() = %+v, %v", r, err)
	}
}

// bitsPerByte is the Shannon entropy of b.
func bitsPerByte(b []byte) float64 {
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	h := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(b))
			h -= p * math.Log2(p)
		}
	}
	return h
}

func TestEntropyModes(t *testing.T) {
	tests := []struct {
		mode     string
		min, max float64
	}{
		{"random", 7.9, 8.0},
		{"text", 3.5, 4.5},
		{"repeat", 0, 0},
	}
	for _, tt := range tests {
		r, err := entropy(Input{N: 1 << 16, Mode: tt.mode, Sink: "stdout", Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.StdEncoding.DecodeString(r.Data)
		if err != nil || len(b) != 1<<16 {
			t.Fatalf("%s: data is %d bytes (%v), want 65536", tt.mode, len(b), err)
		}
		if h := bitsPerByte(b); h < tt.min || h > tt.max {
			t.Errorf("%s: %.2f bits/byte, want %.1f-%.1f", tt.mode, h, tt.min, tt.max)
		}
	}
	a, _ := entropy(Input{N: 64, Sink: "stdout", Seed: 1})
	b, _ := entropy(Input{N: 64, Sink: "stdout", Seed: 1})
	c, _ := entropy(Input{N: 64, Sink: "stdout", Seed: 2})
	if a.Data != b.Data || a.Data == c.Data {
		t.Error("random mode is not a deterministic function of the seed")
	}
	if _, err := entropy(Input{Mode: "loud"}); err == nil {
		t.Error("entropy accepted an unknown mode")
	}
	if _, err := entropy(Input{Sink: "network"}); err == nil {
		t.Error("entropy accepted an unknown sink")
	}
}

func TestBPFAttrLayout(t *testing.T) {
	if got := unsafe.Sizeof(bpfProgLoad{}); got != 128 {
		t.Errorf("sizeof(bpfProgLoad) = %d, want 128", got)
	}
	if got := unsafe.Sizeof(bpfMapCreate{}); got != 128 {
		t.Errorf("sizeof(bpfMapCreate) = %d, want 128", got)
	}
	if got := unsafe.Offsetof(bpfProgLoad{}.kernVersion); got != 40 {
		t.Errorf("offset of kern_version = %d, want 40 (union bpf_attr)", got)
	}
}

// TestFileHelpers exercises the helpers of read-host-file and
// write-outside-tmp on a temporary directory only.
func TestFileHelpers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := tryCreate(f); err != nil {
		t.Fatalf("tryCreate in a temp dir: %v", err)
	}
	if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tryCreate left %s behind (%v)", f, err)
	}
	if err := os.WriteFile(f, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, dir} {
		if err := readSome(p); err != nil {
			t.Errorf("readSome(%s): %v", p, err)
		}
	}
	if err := readSome(filepath.Join(dir, "absent")); errnoName(err) != "ENOENT" {
		t.Errorf("readSome(absent) = %v, want ENOENT", err)
	}
}
