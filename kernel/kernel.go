package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/kernel/sandbox"
	"github.com/trustcells/tcc/kernel/seccomp"
)

// Config configures the Trust Kernel. Zero values take defaults.
type Config struct {
	// StateDir holds the sandboxes' state and root filesystems.
	StateDir string
	// CgroupParent is the absolute cgroup path under which every sandbox
	// gets its cgroup (default /tcc). Orphans under it are swept at start:
	// two daemons must never share one.
	CgroupParent string
	// MaxSandboxes bounds concurrent sandboxes (default 2 per CPU);
	// MaxQueue bounds calls waiting for one (default 64) before ErrBusy.
	MaxSandboxes int
	MaxQueue     int
	// MaxInputBytes bounds the input bytes that running and queued calls
	// hold together (default 512 MiB): past it a call is ErrBusy, so that
	// a full queue of large inputs cannot exhaust the daemon's memory.
	MaxInputBytes int64

	Catalog Catalog
	// Trust returns the verifier keys trusted now; the gate checks every
	// launch against it, so a key removed from the trust file stops its
	// cells at their next call.
	Trust func() note.Verifiers

	// NoMonitor runs without the eBPF monitor even if the kernel has it.
	NoMonitor bool
	// MonitorPairsPerCell caps the distinct syscall pairs the monitor
	// records per cell (0: its default, 2048). A cell past it has lost
	// events and is halted; tests set it tiny to provoke that.
	MonitorPairsPerCell uint32
	// MonitorIdleDetach is how long the monitor's BPF programs stay
	// attached once no cell runs (0: its default, 2 s; negative: always).
	MonitorIdleDetach time.Duration

	// UnsafeTestProfiles compiles every contract with
	// seccomp.CompileUnsafeForTest: forbidden syscalls may be granted and
	// arguments are not narrowed. It exists only so that adversarial tests
	// can show namespaces and capabilities refusing what seccomp would
	// otherwise kill. Only a binary built with the tcc_unsafe_test tag has
	// it (unsafe_test_hatch.go); New fails in any other build.
	UnsafeTestProfiles bool

	Logger *slog.Logger
}

// Catalog is what the kernel needs from the cell catalogue.
type Catalog interface {
	// Cell resolves a name (to its head), a full identity or an
	// unambiguous identity prefix.
	Cell(ref string) (*Cell, error)
	// Head is the current head of a name ("" if none).
	Head(name string) (manifest.Identity, error)
	Revoked(id manifest.Identity) (bool, error)
	// ObjectPath is where the content-addressed store keeps a file. The
	// gate opens it (never following a symlink, refusing anything but a
	// regular file), hashes it, and the sandbox shows that open file.
	ObjectPath(d manifest.Digest) string
	// Baseline is the learned behaviour of an identity; nil if none yet.
	Baseline(id manifest.Identity) (*monitor.Baseline, error)
}

// Cell is a registered cell as the kernel sees it.
type Cell struct {
	Identity  manifest.Identity
	Manifest  *manifest.Manifest
	Signature []byte // the cell.sig note
	Tenant    string // "" = every tenant
	// ByName is true when the reference named the cell: then it must
	// still be the head at launch. Otherwise the identity was pinned.
	ByName bool
}

// Kernel runs calls. It is safe for concurrent use.
type Kernel struct {
	cfg       Config
	log       *slog.Logger
	sandboxes *sandbox.Manager
	admit     *admission

	monitor    *monitor.Monitor // nil when unavailable
	monitorErr error            // why it is unavailable

	mu       sync.Mutex
	profiles map[manifest.Identity]*compiled // by the identity the manifest hashes to: seccomp profile and schemas
}

// compiled holds what is derived once per identity.
type compiled struct {
	profile *seccomp.Profile
	input   *manifest.Validator
	output  *manifest.Validator
}

// New starts the Trust Kernel: it sweeps sandboxes orphaned by a crashed
// daemon and loads the eBPF monitor if the kernel supports it.
func New(ctx context.Context, cfg Config) (*Kernel, error) {
	if cfg.Catalog == nil || cfg.Trust == nil {
		return nil, errors.New("kernel: Config.Catalog and Config.Trust are required")
	}
	if cfg.UnsafeTestProfiles && unsafeCompile == nil {
		return nil, fmt.Errorf("trust kernel: %w", ErrNoUnsafeProfiles)
	}
	if cfg.MaxSandboxes <= 0 {
		cfg.MaxSandboxes = 2 * runtime.NumCPU()
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 64
	}
	if cfg.MaxInputBytes <= 0 {
		cfg.MaxInputBytes = 512 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sb, err := sandbox.New(sandbox.Config{Root: cfg.StateDir, CgroupParent: cfg.CgroupParent, MaxSandboxes: cfg.MaxSandboxes})
	if err != nil {
		return nil, fmt.Errorf("trust kernel: %w", err)
	}
	k := &Kernel{
		cfg:       cfg,
		log:       cfg.Logger,
		sandboxes: sb,
		admit:     newAdmission(cfg.MaxSandboxes, cfg.MaxQueue, cfg.MaxInputBytes),
		profiles:  make(map[manifest.Identity]*compiled),
	}
	removed, err := sb.Sweep(ctx)
	for _, r := range removed {
		k.log.Warn("removed orphan of a previous daemon", "object", r)
	}
	if err != nil {
		return nil, fmt.Errorf("trust kernel: sweep orphans: %w", err)
	}
	if cfg.NoMonitor {
		k.monitorErr = errors.New("disabled by configuration")
	} else if m, err := monitor.Open(monitor.Options{MaxCells: uint32(cfg.MaxSandboxes), PairsPerCell: cfg.MonitorPairsPerCell, IdleDetach: cfg.MonitorIdleDetach}); err != nil {
		k.monitorErr = err
		k.log.Warn("behaviour monitor unavailable; cells still run with seccomp, namespaces and limits", "err", err)
	} else {
		k.monitor = m
	}
	return k, nil
}

// Close unloads the monitor and removes the sandboxes' shared cgroups and
// directories. Calls must have returned.
func (k *Kernel) Close() error {
	var err error
	if k.monitor != nil {
		err = k.monitor.Close()
	}
	return errors.Join(err, k.sandboxes.Close())
}

// MonitorStatus reports whether the behaviour monitor runs, and if not why.
func (k *Kernel) MonitorStatus() (bool, string) {
	if k.monitor != nil {
		return true, ""
	}
	return false, k.monitorErr.Error()
}

// Load reports running and queued calls and the bounds. maxRunning drops
// below Config.MaxSandboxes when sandboxes could not be wiped clean: each
// keeps its slot until the daemon restarts.
func (k *Kernel) Load() (running, queued, maxRunning, maxQueue int) {
	r, q, max := k.admit.load()
	return r, q, max, k.cfg.MaxQueue
}

// Request is one call.
type Request struct {
	// Resolved is the cell to run (Resolve finds it by reference): a cell
	// the caller resolved and checked, a cell being registered (its
	// probation run) or an unregistered capsule being advised. Its files
	// must be in the store. The gate re-verifies it before launch.
	Resolved *Cell
	Input    json.RawMessage // one JSON value

	// Profile, if set, replaces the contract's seccomp profile (advice
	// runs a capsule under a permissive one).
	Profile *seccomp.Profile
	// Unsigned skips the gate's signature check, for advice on a capsule
	// that is not signed yet. Every other check still applies.
	Unsigned bool
	// Baseline, if set, replaces the catalogue's baseline for this call.
	Baseline *monitor.Baseline
	// Observe, if set, receives the monitor's final counters (with the
	// cgroup's CPU time and peak memory) and the worse of their score and
	// the deviation acted on while the cell ran, after it exited (not
	// called when the monitor is unavailable).
	Observe func(monitor.Counters, monitor.Deviation)

	// Begin, if set, is called once the call is admitted and before
	// anything is verified or created; it must make the call.begin audit
	// event durable. If it fails, the call does not run.
	Begin func(ctx context.Context, c *Cell, inputSHA256 string) (seq uint64, err error)
	// Progress receives the cell's progress reports (fd 3), in order,
	// from a goroutine of its own. It may be slow: reports that find it
	// still busy with a queue of them are dropped, and the call never
	// waits for it (a report may still be in delivery when Call returns,
	// none starts after).
	Progress func(Progress)
	// TraceID ties the call's events together; one is made if empty.
	TraceID string
}

// Progress is one line the cell wrote on fd 3.
type Progress struct {
	Progress float64 `json:"progress"`
	Total    float64 `json:"total,omitempty"`
	Message  string  `json:"message,omitempty"`
}

// InputError means the input was refused before any sandbox was made.
type InputError struct {
	Cell string
	Err  error
}

func (e *InputError) Error() string { return fmt.Sprintf("input for cell %s: %v", e.Cell, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// Resolve returns the cell a reference names, as Call would run it.
func (k *Kernel) Resolve(ref string) (*Cell, error) { return k.cfg.Catalog.Cell(ref) }

// Call runs one call of a cell and returns its outcome. An error means the
// call never reached the point of being audited (bad input, busy, Begin
// failed); every call that passed Begin returns an Outcome, whatever
// happened, and its sandbox is gone.
func (k *Kernel) Call(ctx context.Context, req Request) (*outcome.Outcome, error) {
	cell := req.Resolved
	if cell == nil {
		return nil, errors.New("kernel: Request.Resolved is required (Kernel.Resolve finds a cell by reference)")
	}
	m := cell.Manifest
	c, err := k.compile(m)
	if err != nil {
		return nil, err
	}
	if req.Profile != nil {
		c = &compiled{profile: req.Profile, input: c.input, output: c.output}
	}
	if int64(len(req.Input)) > int64(m.Limits.Input) {
		return nil, &InputError{m.Name, fmt.Errorf("%d bytes is more than limits.input (%s)", len(req.Input), m.Limits.Input)}
	}
	if err := c.input.Validate(req.Input); err != nil {
		return nil, &InputError{m.Name, fmt.Errorf("does not match the input schema: %w", err)}
	}
	release, err := k.admit.acquire(ctx, int64(len(req.Input)))
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, &InputError{m.Name, err}
		}
		return nil, err
	}

	if req.TraceID == "" {
		req.TraceID = uuid.Must(uuid.NewV7()).String()
	}
	sum := sha256.Sum256(req.Input)
	o := &outcome.Outcome{Cell: m.Name, Identity: string(cell.Identity), TraceID: req.TraceID, ExitCode: -1, Wipe: outcome.Wipe{Clean: true}}
	// A sandbox that was not wiped clean keeps its slot (kernel/sandbox
	// does not reuse its id range): admission must not count on it.
	defer func() {
		if !o.Wipe.Clean {
			k.log.Error("a sandbox slot is retired until the daemon restarts: its sandbox was not wiped clean", "cell", m.Name, "trace_id", req.TraceID, "leftovers", o.Wipe.Leftovers)
		}
		release(!o.Wipe.Clean)
	}()
	if req.Begin != nil {
		if o.BeginSeq, err = req.Begin(ctx, cell, hex.EncodeToString(sum[:])); err != nil {
			return nil, fmt.Errorf("record call.begin: %w", err)
		}
	}
	files, err := k.gate(ctx, cell, req.Unsigned)
	if err != nil {
		o.Verdict = outcome.Refused
		o.Message = fmt.Sprintf("cell %s was refused before launch: %v", m.Name, err)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			o.Verdict = outcome.Cancelled
			o.Message = fmt.Sprintf("the call was cancelled while cell %s was being verified; it never ran", m.Name)
		}
		return o, nil
	}
	defer closeAll(files)
	k.run(ctx, cell, c, files, req, o)
	return o, nil
}

// compile returns what is derived from a manifest, computed once per
// identity. The key is the identity the manifest hashes to, never the one
// the catalogue claims: a damaged catalogue entry (which the gate refuses)
// must not leave its profile behind for the genuine cell.
func (k *Kernel) compile(m *manifest.Manifest) (*compiled, error) {
	id := m.Identity()
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.profiles[id]; ok {
		return c, nil
	}
	c, err := k.derive(m)
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", m.Name, err)
	}
	if len(k.profiles) >= maxProfiles {
		clear(k.profiles) // rare: more identities called than any catalogue holds heads
	}
	k.profiles[id] = c
	return c, nil
}

// maxProfiles bounds the cache of derived profiles (advice runs add
// identities that are never registered).
const maxProfiles = 1024

// derive compiles the seccomp profile and the schema validators of a
// contract.
func (k *Kernel) derive(m *manifest.Manifest) (*compiled, error) {
	p, err := k.compileSyscalls(m.Syscalls)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	in, err := m.Input.Validator()
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	out, err := m.Output.Validator()
	if err != nil {
		return nil, fmt.Errorf("output schema: %w", err)
	}
	return &compiled{profile: p, input: in, output: out}, nil
}

// unsafeCompile is seccomp.CompileUnsafeForTest in a binary built with the
// tcc_unsafe_test tag (unsafe_test_hatch.go) and nil in every other build,
// so that a production tccd does not contain the unsafe compiler at all.
var unsafeCompile func(manifest.Syscalls) (*seccomp.Profile, error)

// ErrNoUnsafeProfiles means Config.UnsafeTestProfiles was set in a binary
// built without the tcc_unsafe_test tag.
var ErrNoUnsafeProfiles = errors.New("unsafe test profiles are not built into this binary (go build -tags seccomp,tcc_unsafe_test); production builds cannot weaken seccomp filters")

// compileSyscalls is seccomp.Compile, or its unsafe test variant when the
// kernel was configured with UnsafeTestProfiles.
func (k *Kernel) compileSyscalls(s manifest.Syscalls) (*seccomp.Profile, error) {
	if k.cfg.UnsafeTestProfiles {
		return unsafeCompile(s)
	}
	return seccomp.Compile(s)
}

// Syscalls returns the final seccomp allow-list of a cell.
func (k *Kernel) Syscalls(cell *Cell) ([]string, error) {
	c, err := k.compile(cell.Manifest)
	if err != nil {
		return nil, err
	}
	return c.profile.Allowed(), nil
}

// Check compiles what the kernel derives from a contract (the seccomp
// profile, the schemas), so that registration refuses a manifest the kernel
// could not run, with the reason.
func (k *Kernel) Check(m *manifest.Manifest) error {
	_, err := k.derive(m)
	return err
}

// Init is the sandbox init hook of every binary that runs cells (tccd's
// main, and TestMain of tests that start sandboxes): call it first thing.
// In the re-executed "init" process it installs the x32/i386 guard and
// becomes the sandbox's init; elsewhere it returns at once.
func Init() { sandbox.Init(seccomp.InstallArchGuard) }
