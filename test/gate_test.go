package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trustcells/tcc/kernel/outcome"
)

// Issue 3, the verification gate: nothing registered earlier is taken on
// trust at launch. A byte changed in the content-addressed store, a revoked
// identity, a signer removed from the trust file (reloaded on SIGHUP): the
// next call is refused, before any sandbox, with a message naming what
// failed; tccctl exits 6.

func TestGate(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Start()
	sha := e.Register("cells/examples/sha256", nil)
	e.Register("cells/examples/config-audit", nil)
	const shaIn = `{"text":"abc"}`
	const auditIn = `{"resources":[{"type":"storage_bucket","name":"logs","public":true}]}`
	ok := func(cell, in string) {
		t.Helper()
		if o := runCell(t, e, cell, in); o.Verdict != outcome.OK {
			t.Fatalf("run %s: verdict %s (%s), want ok", cell, o.Verdict, o.Message)
		}
	}
	refused := func(cell, in string, want ...string) {
		t.Helper()
		o, code, _ := ctlRun(t, e, cell, in)
		if o.Verdict != outcome.Refused || code != exitCallFailed {
			t.Fatalf("run %s: verdict %s (%s), exit %d; want refused, exit 6", cell, o.Verdict, o.Message, code)
		}
		for _, w := range want {
			if !strings.Contains(o.Message, w) {
				t.Errorf("refusal %q does not say %q", o.Message, w)
			}
		}
		// Refused before launch: no sandbox, so nothing ran and nothing to
		// wipe; the call is still bracketed in the ledger.
		if o.ExitCode != -1 || o.Duration != 0 || !o.Wipe.Clean || o.BeginSeq == 0 || o.EndSeq <= o.BeginSeq {
			t.Errorf("refused call: exit %d, duration %v, wipe %+v, seqs %d..%d", o.ExitCode, o.Duration, o.Wipe, o.BeginSeq, o.EndSeq)
		}
	}
	ok("sha256", shaIn)
	ok("config-audit", auditIn)

	for _, tt := range []struct{ cell, file, in string }{
		{"sha256", "sha256", shaIn},
		{"config-audit", "rules.json", auditIn},
	} {
		t.Run("store object tampered: "+tt.file, func(t *testing.T) {
			obj := objectPath(t, e, tt.cell, tt.file)
			restore := flipObject(t, obj)
			refused(tt.cell, tt.in, `cell `+tt.cell+` was refused before launch`, `file "`+tt.file+`"`, "the store was tampered with")
			restore()
			ok(tt.cell, tt.in)
		})
	}

	// Someone with the disk puts something else than a file there: the
	// gate refuses it at once (it neither follows the link nor blocks on
	// the FIFO), naming the file.
	for _, tt := range []struct {
		name string
		make func(path string) error
		want string
	}{
		{"symlink", func(p string) error { return os.Symlink("/dev/zero", p) }, "symbolic link"},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
	} {
		t.Run("store object replaced by a "+tt.name, func(t *testing.T) {
			obj := objectPath(t, e, "sha256", "sha256")
			moved := obj + ".away"
			if err := os.Rename(obj, moved); err != nil {
				t.Fatal(err)
			}
			if err := tt.make(obj); err != nil {
				t.Fatal(err)
			}
			refused("sha256", shaIn, `file "sha256"`, tt.want)
			if err := os.Remove(obj); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(moved, obj); err != nil {
				t.Fatal(err)
			}
			ok("sha256", shaIn)
		})
	}

	t.Run("store object removed", func(t *testing.T) {
		obj := objectPath(t, e, "sha256", "sha256")
		moved := obj + ".away"
		if err := os.Rename(obj, moved); err != nil {
			t.Fatal(err)
		}
		refused("sha256", shaIn, `file "sha256"`, "no such file")
		if err := os.Rename(moved, obj); err != nil {
			t.Fatal(err)
		}
		ok("sha256", shaIn)
	})

	// The trust file, reloaded on SIGHUP.
	pid := daemonPID(t, e)
	trusted := mustRead(t, e.Pub)
	reload := func(content []byte, wantLog string) {
		t.Helper()
		if err := os.WriteFile(e.Pub, content, 0o644); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(mustRead(t, e.Log)), wantLog)
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(string(mustRead(t, e.Log)), wantLog) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no new %q in the log within 10s of SIGHUP", wantLog)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Run("signer removed from the trust file", func(t *testing.T) {
		if out, code := e.Ctl("key", "generate", "other", "--out", e.Dir); code != 0 {
			t.Fatal(out)
		}
		reload(mustRead(t, filepath.Join(e.Dir, "other.pub")), "trust file reloaded")
		if line := waitLog(t, e, "trust file reloaded", time.Second); !strings.Contains(line, "removed=[dev]") || !strings.Contains(line, "added=[other]") {
			t.Errorf("reload log line %q: want removed=[dev] added=[other]", line)
		}
		refused("sha256", shaIn, "signature", "dev")
		// And nothing new signed by dev registers.
		out, code := e.Ctl("cell", "register", e.Signed("cells/examples/json-query", nil))
		if code != exitVerification || !strings.Contains(out, "dev") {
			t.Errorf("register with dev untrusted: exit %d, %q; want 4 naming dev", code, out)
		}
		reload(trusted, "trust file reloaded")
		ok("sha256", shaIn)
	})
	t.Run("broken trust file keeps the old trust", func(t *testing.T) {
		reload([]byte("this is not a verifier key\n"), "trust file reload failed; keeping the keys trusted before")
		ok("sha256", shaIn)
		if err := os.WriteFile(e.Pub, trusted, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		e.MustCtl("cell", "revoke", sha)
		refused(sha, shaIn, sha+" is revoked")
	})
}

// objectPath is where the daemon's content-addressed store keeps a file of
// a registered cell.
func objectPath(t *testing.T, e *Env, cell, file string) string {
	t.Helper()
	c, err := e.Client().Cell(context.Background(), cell)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files map[string]string `json:"files"`
	}
	if err := json.Unmarshal(c.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	d, ok := m.Files[file]
	if !ok || !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("manifest of %s lists no file %s: %v", cell, file, m.Files)
	}
	h := strings.TrimPrefix(d, "sha256:")
	p := filepath.Join(e.State, "ledger", "objects", "sha256", h[:2], h[2:])
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("object of %s/%s: %v", cell, file, err)
	}
	return p
}

// flipObject flips one byte of a stored object as an intruder with root
// would (make it writable, write, restore the mode) and returns a function
// that flips it back.
func flipObject(t *testing.T, path string) (restore func()) {
	t.Helper()
	flip := func() {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		b := mustRead(t, path)
		b[len(b)/2] ^= 0x80
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	flip()
	return flip
}

// daemonPID is the daemon's pid, as it reports it.
func daemonPID(t *testing.T, e *Env) int {
	t.Helper()
	s, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.PID
}
