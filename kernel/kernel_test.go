package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sys/unix"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/internal/testutil"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/kernel/sandbox"
)

// These tests need no sandbox: they exercise the kernel's decisions
// (cache, gate, wait loop, verdicts, progress) with a fake catalogue and a
// fake sandbox. test/ runs the real thing.

// fakeCatalog keeps objects in a directory, one file per digest.
type fakeCatalog struct {
	dir string

	mu      sync.Mutex
	revoked map[manifest.Identity]bool
}

func (c *fakeCatalog) Cell(string) (*Cell, error)                            { return nil, errors.New("not found") }
func (c *fakeCatalog) Head(string) (manifest.Identity, error)                { return "", nil }
func (c *fakeCatalog) Baseline(manifest.Identity) (*monitor.Baseline, error) { return nil, nil }
func (c *fakeCatalog) ObjectPath(d manifest.Digest) string                   { return filepath.Join(c.dir, d.Hex()) }
func (c *fakeCatalog) Revoked(id manifest.Identity) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revoked[id], nil
}

func (c *fakeCatalog) revoke(id manifest.Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revoked[id] = true
}

// testKernel is a Kernel without sandboxes or monitor: enough for every
// call that ends before a sandbox (refused, cancelled, busy).
func testKernel(t *testing.T, slots int) (*Kernel, *fakeCatalog) {
	t.Helper()
	cat := &fakeCatalog{dir: t.TempDir(), revoked: map[manifest.Identity]bool{}}
	k := &Kernel{
		cfg:        Config{Catalog: cat, Trust: func() note.Verifiers { return nil }, MaxSandboxes: slots, MaxQueue: 4},
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		admit:      newAdmission(slots, 4, 1<<20),
		profiles:   map[manifest.Identity]*compiled{},
		monitorErr: errors.New("not in unit tests"),
	}
	return k, cat
}

// testManifest is the sha256 example's contract with one file, stored in
// the catalogue with content.
func testManifest(t *testing.T, cat *fakeCatalog, content string) *manifest.Manifest {
	t.Helper()
	src, err := os.ReadFile("../cells/examples/sha256/cell.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	d := manifest.DigestOf([]byte(content))
	m.Files = map[string]manifest.Digest{m.Entrypoint: d}
	if err := os.WriteFile(cat.ObjectPath(d), []byte(content), 0o555); err != nil {
		t.Fatal(err)
	}
	return m
}

const shaInput = `{"text":"abc"}`

// M4: a catalogue entry whose manifest does not hash to its identity is
// refused by the gate, and must not leave its seccomp profile in the cache
// for the genuine cell of that identity.
func TestCompileCacheKeyedByContent(t *testing.T) {
	k, cat := testKernel(t, 1)
	m := testManifest(t, cat, "binary")
	genuine := &Cell{Identity: m.Identity(), Manifest: m}
	forged := *m
	forged.Syscalls.Extra = []string{"sysinfo"}
	damaged := &Cell{Identity: genuine.Identity, Manifest: &forged}

	o, err := k.Call(context.Background(), Request{Resolved: damaged, Input: []byte(shaInput), Unsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if o.Verdict != outcome.Refused || !strings.Contains(o.Message, "the catalogue is damaged") {
		t.Fatalf("damaged entry: %s %q, want refused", o.Verdict, o.Message)
	}
	got, err := k.Syscalls(genuine)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got, "sysinfo") {
		t.Errorf("the genuine cell's profile allows sysinfo, which only the damaged entry asked for")
	}
}

// M3: whatever replaced a store object, the gate refuses it, names the
// file, and never blocks or reads without bound.
func TestGateStoreObjects(t *testing.T) {
	k, cat := testKernel(t, 1)
	const content = "the cell's binary"
	replace := map[string]func(path string) error{
		"fifo":    func(p string) error { return unix.Mkfifo(p, 0o600) },
		"symlink": func(p string) error { return os.Symlink("/dev/zero", p) },
		"device":  func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5))) },
		"dir":     func(p string) error { return os.Mkdir(p, 0o700) },
		"huge": func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(capsule.MaxTotalSize + 1) // sparse
		},
		"flipped": func(p string) error { return os.WriteFile(p, []byte("the cell's binarY"), 0o555) },
		"missing": func(string) error { return nil },
	}
	want := map[string]string{
		"fifo": "not a regular file", "symlink": "symbolic link", "device": "not a regular file", "dir": "not a regular file",
		"huge": "larger than any capsule", "flipped": "the store was tampered with", "missing": "no such file",
	}
	for name, do := range replace {
		t.Run(name, func(t *testing.T) {
			if name == "device" {
				testutil.RequireRoot(t) // mknod
			}
			m := testManifest(t, cat, content)
			path := cat.ObjectPath(m.Files[m.Entrypoint])
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := do(path); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(path)
			done := make(chan error, 1)
			go func() {
				files, err := k.gate(context.Background(), &Cell{Identity: m.Identity(), Manifest: m}, true)
				closeAll(files)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `file "sha256"`) || !strings.Contains(err.Error(), want[name]) {
					t.Errorf("gate: %v; want refused naming the file and %q", err, want[name])
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the gate hangs on the object") // not a timing test: it must return at all
			}
		})
	}
	t.Run("regular file: open, hashed, handed over", func(t *testing.T) {
		m := testManifest(t, cat, content)
		files, err := k.gate(context.Background(), &Cell{Identity: m.Identity(), Manifest: m}, true)
		if err != nil {
			t.Fatal(err)
		}
		defer closeAll(files)
		b, err := io.ReadAll(io.NewSectionReader(files[m.Entrypoint], 0, 1<<20))
		if err != nil || string(b) != content {
			t.Errorf("handed-over file reads %q, %v", b, err)
		}
	})
}

// A call queued for a slot is verified when it gets one, not when it
// arrived: a revocation while it waits refuses it.
func TestRevokedWhileQueued(t *testing.T) {
	k, cat := testKernel(t, 1)
	m := testManifest(t, cat, "binary")
	cell := &Cell{Identity: m.Identity(), Manifest: m}
	hold, err := k.admit.acquire(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		o   *outcome.Outcome
		err error
	}
	got := make(chan res, 1)
	go func() {
		o, err := k.Call(context.Background(), Request{Resolved: cell, Input: []byte(shaInput), Unsigned: true})
		got <- res{o, err}
	}()
	for {
		if _, q, _ := k.admit.load(); q == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cat.revoke(cell.Identity)
	hold(false)
	r := <-got
	if r.err != nil || r.o.Verdict != outcome.Refused || !strings.Contains(r.o.Message, "is revoked") {
		t.Fatalf("call queued across a revocation: %+v, %v; want refused, revoked", r.o, r.err)
	}
}

// fakeSandbox is a cell that ends when told to (or never).
type fakeSandbox struct {
	mu     sync.Mutex
	kills  int
	exit   chan sandbox.Exit // what Wait returns; never sent: never exits
	onKill func()
}

func (f *fakeSandbox) Wait(ctx context.Context) (sandbox.Exit, error) {
	select {
	case e := <-f.exit:
		return e, nil
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
}

func (f *fakeSandbox) Kill() error {
	f.mu.Lock()
	f.kills++
	f.mu.Unlock()
	if f.onKill != nil {
		f.onKill()
	}
	return nil
}

func (f *fakeSandbox) SetCPU(float64) error { return nil }

func testRunning(t *testing.T, sb cellSandbox) *running {
	k, cat := testKernel(t, 1)
	m := testManifest(t, cat, "binary")
	return &running{k: k, sb: sb, cell: &Cell{Identity: m.Identity(), Manifest: m}}
}

// A cell that exited at the same moment as its deadline, a cancel and an
// output overflow keeps its own ending: it was not killed.
func TestWaitPrefersExit(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	over := make(chan struct{})
	close(over)
	for range 100 {
		fs := &fakeSandbox{}
		r := testRunning(t, fs)
		done := make(chan exitResult, 1)
		done <- exitResult{exit: sandbox.Exit{Code: 0}}
		exit, err := r.wait(cancelled, done, 0, over)
		if err != nil || exit != (sandbox.Exit{}) || r.stopped != notStopped || fs.kills != 0 {
			t.Fatalf("exit %v, err %v, stopped %d, kills %d; want its own exit, not stopped", exit, err, r.stopped, fs.kills)
		}
	}
}

// L2: a killed cell that is never reaped does not hold the call: after
// the grace the wait fails, so that the wipe runs and reports it.
func TestWaitKillGrace(t *testing.T) {
	defer func(g time.Duration) { killGrace = g }(killGrace)
	killGrace = 50 * time.Millisecond
	fs := &fakeSandbox{} // never exits, not even when killed
	r := testRunning(t, fs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	_, err := r.wait(context.Background(), r.exited(ctx), time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "not reaped") || r.stopped != stopTimeout || fs.kills != 1 {
		t.Fatalf("err %v, stopped %d, kills %d; want the grace error after one kill at the deadline", err, r.stopped, fs.kills)
	}
}

// H3: what the monitor sees only after the cell exited still decides the
// verdict: lost events, a failed final read, or (under policy halt) a
// deviation make it halted and withhold the result.
func TestAfterExit(t *testing.T) {
	uniform := monitor.Counters{TotalSyscalls: 100, BytesWritten: 1 << 16, BytesSampled: 1 << 16}
	for i := range uniform.Bytes {
		uniform.Bytes[i] = 256 // 8 bits per byte
	}
	tests := []struct {
		name    string
		policy  manifest.Policy
		final   monitor.Counters
		err     error
		stopped stopReason
		want    outcome.Verdict
		msg     string
	}{
		{"quiet run", manifest.PolicyHalt, monitor.Counters{TotalSyscalls: 100}, nil, notStopped, outcome.OK, ""},
		{"deviation under halt", manifest.PolicyHalt, uniform, nil, notStopped, outcome.Halted, "was halted after exit by the behaviour monitor: output entropy"},
		{"deviation under log", manifest.PolicyLog, uniform, nil, notStopped, outcome.OK, ""},
		{"lost events under log", manifest.PolicyLog, monitor.Counters{Dropped: 1}, nil, notStopped, outcome.Halted, "lost events"},
		{"final read failed", manifest.PolicyLog, monitor.Counters{}, errors.New("map gone"), notStopped, outcome.Halted, "could not read the cell's final counters: map gone"},
		{"seccomp kill", manifest.PolicyLog, monitor.Counters{Kills: 1, SeccompKills: []monitor.SeccompKill{{Nr: 103, Name: "syslog"}}}, nil, notStopped, outcome.Violation, "undeclared syscall syslog"},
		{"timed out first", manifest.PolicyHalt, uniform, nil, stopTimeout, outcome.Timeout, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRunning(t, &fakeSandbox{})
			m := *r.cell.Manifest
			m.Monitor.Policy, m.Monitor.Threshold = tt.policy, 1
			m.Monitor.Entropy = &manifest.Band{Min: 0, Max: 7}
			r.cell.Manifest = &m
			r.watch, r.stopped = &monitor.Watch{}, tt.stopped // a watch was made; its final counters are tt.final
			r.afterExit(tt.final, tt.err)
			o := &outcome.Outcome{}
			c, err := r.k.compile(&m)
			if err != nil {
				t.Fatal(err)
			}
			classify(o, &m, c.output, r, sandbox.Exit{}, sandbox.Stats{}, nil, okStdout(t))
			if o.Verdict != tt.want || !strings.Contains(o.Message, tt.msg) {
				t.Errorf("verdict %s %q; want %s containing %q", o.Verdict, o.Message, tt.want, tt.msg)
			}
			if (len(o.Result) > 0) != (tt.want == outcome.OK) {
				t.Errorf("result %s with verdict %s", o.Result, o.Verdict)
			}
		})
	}
}

func okStdout(t *testing.T) *capWriter {
	w := &capWriter{limit: 1 << 10, over: make(chan struct{})}
	fmt.Fprintf(w, `{"sha256":"%s","bytes":3}`, strings.Repeat("a", 64))
	return w
}

// Verdicts the wait alone cannot give.
func TestClassify(t *testing.T) {
	full := &capWriter{limit: 8, over: make(chan struct{})}
	fmt.Fprint(full, `{"sha256":"cut off here`)
	tests := []struct {
		name   string
		exit   sandbox.Exit
		st     sandbox.Stats
		serr   error
		stdout *capWriter
		want   outcome.Verdict
		msg    string
	}{
		{"ok", sandbox.Exit{}, sandbox.Stats{}, nil, okStdout(t), outcome.OK, ""},
		{"over the cap, then exit 0", sandbox.Exit{}, sandbox.Stats{}, nil, full, outcome.OutputTooLarge, "wrote more than limits.output (4KiB) to stdout"},
		{"crash", sandbox.Exit{Code: -1, Signal: syscall.SIGSEGV}, sandbox.Stats{}, nil, okStdout(t), outcome.Crashed, "killed by SIGSEGV"},
		{"OOM", sandbox.Exit{Code: -1, Signal: syscall.SIGKILL}, sandbox.Stats{OOMKills: 1}, nil, okStdout(t), outcome.OOM, "memory limit"},
		{"killed, stats unreadable", sandbox.Exit{Code: -1, Signal: syscall.SIGKILL}, sandbox.Stats{}, errors.New("no memory.events"), okStdout(t), outcome.Internal, "could not be read"},
		{"a child OOM-killed, exit 0", sandbox.Exit{}, sandbox.Stats{OOMKills: 1}, nil, okStdout(t), outcome.OOM, "memory limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRunning(t, &fakeSandbox{})
			c, err := r.k.compile(r.cell.Manifest)
			if err != nil {
				t.Fatal(err)
			}
			o := &outcome.Outcome{}
			classify(o, r.cell.Manifest, c.output, r, tt.exit, tt.st, tt.serr, tt.stdout)
			if o.Verdict != tt.want || !strings.Contains(o.Message, tt.msg) {
				t.Errorf("verdict %s %q; want %s containing %q", o.Verdict, o.Message, tt.want, tt.msg)
			}
		})
	}
}

// Long lines are skipped whole: the tail of one is never read as a report.
func TestReadProgress(t *testing.T) {
	long := strings.Repeat("x", 3*maxProgressLine) + `{"progress":0.5}`
	in := `{"progress":0.1}` + "\n" + long + "\n" + "not json\n" + `{"progress":0.9,"message":"done"}`
	var got []Progress
	readProgress(strings.NewReader(in), func(p Progress) { got = append(got, p) })
	want := []Progress{{Progress: 0.1}, {Progress: 0.9, Message: "done"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// M1: a Progress callback that never returns holds neither the reader nor
// the end of the call.
func TestProgressStuckCallback(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	defer close(block)
	var mu sync.Mutex
	calls := 0
	f := forwardProgress(pr, func(Progress) {
		mu.Lock()
		calls++
		mu.Unlock()
		<-block
	})
	fmt.Fprintln(pw, `{"progress":0.1}`)
	for entered := false; !entered; {
		mu.Lock()
		entered = calls == 1
		mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	// The callback is stuck now; the cell goes on reporting.
	for range 200 {
		fmt.Fprintln(pw, `{"progress":0.5}`)
	}
	pw.Close()
	stopped := make(chan struct{})
	go func() { f.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("stop waits for a stuck Progress callback") // it must return at all
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("the callback was entered %d times while the first call was stuck; want 1", calls)
	}
}

// M5: the stderr tail is right whatever the write sizes, and a flood of
// small writes costs linear time (the old writer shifted the whole buffer
// on every write: this test would run for hours).
func TestTailWriter(t *testing.T) {
	for _, limit := range []int{0, 1, 7, 64} {
		for _, chunk := range []int{1, 3, 64, 200} {
			w := &tailWriter{limit: limit}
			var all bytes.Buffer
			for i := range 1000 {
				p := bytes.Repeat([]byte{byte('a' + i%26)}, chunk)
				p[0] = byte('0' + i%10)
				w.Write(p)
				all.Write(p)
			}
			want := all.String()
			want = want[max(0, len(want)-limit):]
			if limit == 0 {
				want = ""
			}
			if got := w.String(); got != want {
				t.Fatalf("limit %d chunk %d: tail %q, want %q", limit, chunk, got, want)
			}
			if cap(w.buf) > 4*limit+64 { // at most 2*limit held, plus append's growth
				t.Errorf("limit %d chunk %d: buffer capacity %d", limit, chunk, cap(w.buf))
			}
		}
	}
	w := &tailWriter{limit: 1 << 20}
	b := []byte{'x'}
	for range 8 << 20 {
		w.Write(b)
	}
	if len(w.String()) != 1<<20 {
		t.Errorf("tail %d bytes", len(w.String()))
	}
}
