package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

// Issue 2, the daemon: who may change the catalogue, one daemon per state
// directory, clean stop, and a ledger that survives restarts and SIGKILL in
// the middle of registrations.

// adminGID is the --admin-group of TestCallers: a gid no account uses, so
// the test needs no change to /etc/group.
const adminGID = 47113

// TestCallers runs tccctl as uid 65534 (nobody): reads and calls work,
// catalogue changes are refused with exit 5; a member of --admin-group is
// an admin.
func TestCallers(t *testing.T) {
	t.Parallel()
	e := NewEnv(t, "--admin-group", fmt.Sprint(adminGID))
	e.Start()
	v1 := e.Register("cells/examples/sha256", nil)
	v2 := e.Signed("cells/examples/sha256", version(2, v1))
	ctl := nobodyCtl(t, e)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	admin := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{adminGID}}

	// Reads and calls are for everyone.
	for _, args := range [][]string{
		{"status"}, {"cell", "list"}, {"cell", "inspect", "sha256", "--json"}, {"cell", "lineage", "sha256"},
		{"cell", "syscalls", "sha256"}, {"run", "sha256", "--input", `{"text":"abc"}`},
	} {
		if out, code := ctl(nobody, args...); code != 0 {
			t.Errorf("as nobody, tccctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	var st api.Status
	out, _ := ctl(nobody, "status", "--json")
	decodeJSON(t, out, &st)
	if st.Caller.ID != "uid:65534" || st.Caller.Admin {
		t.Errorf("status as nobody: caller %+v, want uid:65534, not admin", st.Caller)
	}
	out, _ = ctl(nobody, "run", "sha256", "--input", `{"text":"abc"}`)
	if !strings.Contains(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") {
		t.Errorf("run as nobody: %s", out)
	}

	// Catalogue changes are for admins.
	before := ledgerSize(t, e)
	for _, args := range [][]string{
		{"cell", "register", v2},
		{"cell", "rollback", "sha256", v1},
		{"cell", "revoke", v1},
	} {
		out, code := ctl(nobody, args...)
		if code != exitForbidden || !strings.Contains(out, "is for admins (root or the admin group); you are uid:65534") {
			t.Errorf("as nobody, tccctl %s: exit %d, %q; want exit 5 and the refusal", strings.Join(args, " "), code, out)
		}
	}
	if after := ledgerSize(t, e); after != before {
		t.Errorf("refused admin verbs appended %d events", after-before)
	}
	if h := head(t, e, "sha256"); h != v1 {
		t.Errorf("head is %s after refused changes, want %s", h, v1)
	}

	// A member of the admin group is an admin.
	out, _ = ctl(admin, "status", "--json")
	decodeJSON(t, out, &st)
	if !st.Caller.Admin {
		t.Errorf("status as a member of gid %d: caller %+v, want admin", adminGID, st.Caller)
	}
	if out, code := ctl(admin, "cell", "register", v2); code != 0 {
		t.Errorf("register as a member of the admin group: exit %d\n%s", code, out)
	}
	if out, code := ctl(admin, "cell", "rollback", "sha256", v1); code != 0 {
		t.Errorf("rollback as a member of the admin group: exit %d\n%s", code, out)
	}
}

// nobodyCtl returns a runner of tccctl as another user: the binary is
// copied to a directory everyone may read, since the test's own is 0700.
func nobodyCtl(t *testing.T, e *Env) func(*syscall.Credential, ...string) (string, int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "tcc-it-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "tccctl")
	if err := os.WriteFile(exe, mustRead(t, filepath.Join(bin, "tccctl")), 0o755); err != nil {
		t.Fatal(err)
	}
	return func(cred *syscall.Credential, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(exe, args...)
		cmd.Env = []string{"TCC_SOCKET=" + e.Socket, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("tccctl %v as uid %d: %v", args, cred.Uid, err)
		}
		return string(out), 0
	}
}

// TestOneDaemonPerStateDir starts a second tccd on a running daemon's state
// directory and on its socket: both are refused with a message that says
// why, and the first daemon carries on.
func TestOneDaemonPerStateDir(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	e.Register("cells/examples/sha256", nil)

	// Same state directory, its own socket and cgroup parent.
	second := sibling(e)
	second.State = e.State
	out, err := runTccd(second)
	if err == nil || !strings.Contains(out, "another tccd") || !strings.Contains(out, e.State) {
		t.Errorf("second tccd on the same state dir: %v\n%s\nwant a refusal naming the state dir and another tccd", err, out)
	}
	// Same socket, its own state.
	third := sibling(e)
	third.Socket = e.Socket
	out, err = runTccd(third)
	if err == nil || !strings.Contains(out, "another tccd is answering") {
		t.Errorf("second tccd on the same socket: %v\n%s", err, out)
	}
	if o := runCell(t, e, "sha256", `{"text":"abc"}`); o.Verdict != outcome.OK {
		t.Errorf("the first daemon after the refused starts: %s %s", o.Verdict, o.Message)
	}

	// Same cgroup parent, its own state and socket, while a call runs: the
	// second daemon's orphan sweep must not take the first one's live
	// sandbox for an orphan.
	e.Register("test/cells/hostile", nil)
	done := make(chan *outcome.Outcome, 1)
	go func() {
		o, err := e.Client().Run(context.Background(), api.RunRequest{Cell: "hostile", Input: json.RawMessage(`{"attack":"busy-loop","seconds":2}`)})
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	waitCell(t, e, "hostile")
	fourth := sibling(e)
	fourth.Cgroup = e.Cgroup
	out, err = runTccd(fourth)
	if err == nil || !strings.Contains(out, "cgroup parent") || !strings.Contains(out, e.Cgroup) {
		t.Errorf("second tccd on the same cgroup parent: %v\n%s\nwant a refusal naming the cgroup parent", err, out)
	}
	if o := <-done; o == nil || o.Verdict != outcome.OK {
		t.Errorf("the first daemon's call while a second daemon started on its cgroup parent: %+v", o)
	}
}

// sibling is a second daemon's environment beside e: its own state,
// socket and cgroup parent, e's keys. It has no cleanup of its own: a test
// runs it with runTccd, expecting it not to start.
func sibling(e *Env) *Env {
	s := *e
	s.cmd, s.done = nil, nil
	s.State = filepath.Join(e.Dir, "state-"+randHex(3))
	s.Socket = filepath.Join(e.Dir, "sibling-"+randHex(3)+".sock")
	s.Cgroup = "/tcc-test-" + randHex(6)
	envs.Lock()
	envs.cgroups, envs.states = append(envs.cgroups, s.Cgroup), append(envs.states, s.State)
	envs.Unlock()
	return &s
}

// runTccd runs tccd in the foreground with e's flags and returns its
// output once it exits (within 20 s).
func runTccd(e *Env) (string, error) {
	args := append([]string{
		"--state-dir", e.State, "--socket", e.Socket, "--trust", e.Pub,
		"--ledger-key", e.Key, "--cgroup-parent", e.Cgroup,
	}, e.args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.tccd(), args...)
	cmd.Env = append(os.Environ(), e.DaemonEnv...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("tccd did not exit within 20s: it started")
	}
	return string(out), err
}

// TestRestart stops the daemon with SIGTERM and starts it again: cells,
// heads, lineage and rollbacks are kept, and they run.
func TestRestart(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	v1 := e.Register("cells/examples/sha256", nil)
	v2 := e.Register("cells/examples/sha256", version(2, v1))
	jq := e.Register("cells/examples/json-query", nil)
	e.MustCtl("cell", "rollback", "sha256", v1)
	ctx := context.Background()
	list, err := e.Client().Cells(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lin, err := e.Client().Lineage(ctx, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	size := ledgerSize(t, e)

	e.Stop()
	if _, err := os.Lstat(e.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after SIGTERM: %v", err)
	}
	e.CheckNoLeftovers()
	e.Start()

	list2, err := e.Client().Cells(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(summaries(list2)) != fmt.Sprint(summaries(list)) {
		t.Errorf("cells after restart\n got %v\nwant %v", summaries(list2), summaries(list))
	}
	lin2, err := e.Client().Lineage(ctx, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	if lin2.Head != v1 || len(lin2.Entries) != 2 || lin2.Entries[1].Identity != v2 || len(lin2.Moves) != len(lin.Moves) {
		t.Errorf("lineage after restart: %+v, want head %s, 2 entries, %d moves", lin2, v1, len(lin.Moves))
	}
	if s := ledgerSize(t, e); s <= size {
		t.Errorf("ledger size %d after restart, was %d: the restart should have appended events", s, size)
	}
	for _, ref := range []string{"sha256", v2, jq} {
		in := `{"text":"abc"}`
		if ref == jq {
			in = `{"document":{"a":1},"query":".a"}`
		}
		if o := runCell(t, e, ref, in); o.Verdict != outcome.OK {
			t.Errorf("run %s after restart: %s %s", ref, o.Verdict, o.Message)
		}
	}
}

func summaries(list []api.CellSummary) []string {
	var out []string
	for _, c := range list {
		out = append(out, fmt.Sprintf("%s@%s(%d)", c.Name, c.Head, c.Versions))
	}
	return out
}

// TestKillDuringRegistration registers capsules in a loop — a lineage
// chain and independent names — while the daemon is killed with SIGKILL at
// random moments (and once while a probation sandbox runs). After each
// restart every registration is whole (record, head, lineage, runnable) or
// absent, and the orphan sweep leaves nothing behind.
func TestKillDuringRegistration(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	ctx := context.Background()
	const rounds, perRound = 4, 3
	chainHead := ""
	swept := 0
	for round := range rounds {
		// Plan this round: chain versions (each naming the previous) and
		// names of their own, interleaved.
		type plan struct {
			name, id, tar, parent string
		}
		var plans []plan
		parent := chainHead
		for i := range perRound {
			n := round*perRound + i + 10
			tarPath := e.Signed("cells/examples/sha256", func(y string) string {
				return version(n%10, parent)(strings.Replace(y, "\nname: sha256", "\nname: chain", 1))
			})
			plans = append(plans, plan{"chain", localIdentity(t, e, tarPath), tarPath, parent})
			parent = plans[len(plans)-1].id
			name := fmt.Sprintf("solo-%02d", n)
			tarPath = e.Signed("cells/examples/sha256", rename(name))
			plans = append(plans, plan{name, localIdentity(t, e, tarPath), tarPath, ""})
		}

		// Register them one after another until the daemon dies.
		acked := make([]bool, len(plans))
		attempted := make([]bool, len(plans))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, p := range plans {
				attempted[i] = true
				f, err := os.Open(p.tar)
				if err != nil {
					return
				}
				_, err = api.NewClient(e.Socket).Register(ctx, f, "")
				f.Close()
				if err != nil {
					return
				}
				acked[i] = true
			}
		}()
		if round%2 == 0 {
			// A registration takes about a second here (probation runs
			// each example three times): land anywhere in the first few.
			time.Sleep(time.Duration(1000+rand.IntN(3000)) * time.Millisecond)
		} else {
			// Kill while a probation sandbox runs.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if s, err := e.Client().Status(ctx); err == nil && s.Sandboxes.Running > 0 {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		e.Kill9()
		wg.Wait()
		logBefore := len(mustRead(t, e.Log))
		e.Start()
		swept += strings.Count(string(mustRead(t, e.Log)[logBefore:]), "removed orphan of a previous daemon")
		sandboxDirsEmpty(t, e)
		noCellProcesses(t, e)

		// Whole or absent.
		n := 0
		for i, p := range plans {
			rec, err := e.Client().Cell(ctx, p.id)
			present := err == nil
			var ae *api.Error
			if !present && !(errors.As(err, &ae) && ae.Code == api.CodeNotFound) {
				t.Fatalf("round %d: inspect %s: %v", round, p.id, err)
			}
			switch {
			case acked[i] && !present:
				t.Errorf("round %d: %s %s was acknowledged but is gone after the restart", round, p.name, p.id)
			case !attempted[i] && present:
				t.Errorf("round %d: %s %s was never sent but is registered", round, p.name, p.id)
			}
			if !present {
				continue
			}
			n++
			if rec.Name != p.name || rec.Parent != p.parent || rec.Revoked {
				t.Errorf("round %d: record %+v, want name %s parent %q", round, rec, p.name, p.parent)
			}
			if o := runCell(t, e, p.id, `{"text":"abc"}`); o.Verdict != outcome.OK {
				t.Errorf("round %d: registered %s does not run: %s %s", round, p.id, o.Verdict, o.Message)
			}
		}
		// The chain: each entry's parent is the one before, the head the last.
		lin, err := e.Client().Lineage(ctx, "chain")
		if err == nil {
			for i, en := range lin.Entries {
				if i > 0 && en.Parent != lin.Entries[i-1].Identity {
					t.Errorf("round %d: chain entry %d has parent %s, want %s", round, i, en.Parent, lin.Entries[i-1].Identity)
				}
			}
			if last := lin.Entries[len(lin.Entries)-1].Identity; lin.Head != last {
				t.Errorf("round %d: chain head %s, last entry %s", round, lin.Head, last)
			}
			chainHead = lin.Head
		}
		for _, p := range plans {
			if p.name == "chain" {
				continue
			}
			if l, err := e.Client().Lineage(ctx, p.name); err == nil && (len(l.Entries) != 1 || l.Head != l.Entries[0].Identity) {
				t.Errorf("round %d: lineage of %s: %+v", round, p.name, l)
			}
		}
		t.Logf("round %d: %d of %d registrations present after SIGKILL", round, n, len(plans))
	}
	t.Logf("orphans swept over %d restarts: %d", rounds, swept)
	if swept == 0 {
		t.Error("no restart swept an orphan, though one kill came while a probation sandbox ran")
	}
}

// localIdentity is a packed capsule's identity, read locally.
func localIdentity(t *testing.T, e *Env, capsule string) string {
	t.Helper()
	var s struct {
		Identity string `json:"identity"`
	}
	decodeJSON(t, e.MustCtl("cell", "inspect", capsule, "--json"), &s)
	return s.Identity
}
