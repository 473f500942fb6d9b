package blobs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestStore(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Unix(1_700_000_000, 0)}
	s, err := Open(Options{Dir: dir, Cap: 100, Retention: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	put := func(tenant, data string) string {
		t.Helper()
		d, err := s.Put(tenant, []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Second)
		return d
	}
	a := put("acme", strings.Repeat("a", 40))
	if got, err := s.Get("acme", a); err != nil || string(got) != strings.Repeat("a", 40) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if _, err := s.Get("globex", a); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's Get = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("", a); !errors.Is(err, ErrNotFound) {
		t.Errorf("no-tenant Get of a tenant's blob = %v, want ErrNotFound", err)
	}
	if _, err := s.Put("acme", make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put beyond the cap = %v, want ErrTooLarge", err)
	}

	// Cap: b and a refreshed, then c overflows: the oldest (b) goes.
	b := put("acme", strings.Repeat("b", 40))
	put("acme", strings.Repeat("a", 40))
	cc := put("", strings.Repeat("c", 40))
	if _, err := s.Get("acme", b); !errors.Is(err, ErrNotFound) {
		t.Errorf("oldest blob after overflow: %v, want evicted", err)
	}
	for _, k := range []struct{ tenant, d string }{{"acme", a}, {"", cc}} {
		if _, err := s.Get(k.tenant, k.d); err != nil {
			t.Errorf("Get(%q, %s) after eviction: %v", k.tenant, k.d[:8], err)
		}
	}
	if n, total := s.Usage(); n != 2 || total != 80 {
		t.Errorf("Usage = %d, %d; want 2, 80", n, total)
	}

	// A read is a use: a blob read within the retention stays.
	c.t = c.t.Add(50 * time.Minute)
	if _, err := s.Get("acme", a); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(20 * time.Minute) // 70 minutes after a was stored, 20 after it was read
	if _, _, err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("acme", a); err != nil {
		t.Errorf("a blob read 20 minutes ago, stored 70 ago: %v; want it kept (retention 1h after the last use)", err)
	}
	if _, err := s.Get("", cc); !errors.Is(err, ErrNotFound) {
		t.Errorf("a blob unused for 70 minutes: %v; want it pruned", err)
	}
	cc = put("", strings.Repeat("c", 40))

	// Damage is detected and the copy dropped.
	os.WriteFile(filepath.Join(dir, "_", cc), []byte("x"), 0o600)
	if _, err := s.Get("", cc); !errors.Is(err, ErrNotFound) {
		t.Errorf("damaged blob: %v, want ErrNotFound", err)
	}

	// Reopen: index rebuilt, stray files removed; retention expires a.
	os.WriteFile(filepath.Join(dir, "tmp", "put-1"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "stray"), nil, 0o600)
	c.t = c.t.Add(2 * time.Hour)
	s, err = Open(Options{Dir: dir, Cap: 100, Retention: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Usage(); n != 0 {
		t.Errorf("after the retention: %d blobs left", n)
	}
	for _, p := range []string{"tmp/put-1", "stray"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open", p)
		}
	}

	off, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Put("", []byte("x")); !errors.Is(err, ErrDisabled) {
		t.Errorf("Put with cap 0 = %v, want ErrDisabled", err)
	}
}
