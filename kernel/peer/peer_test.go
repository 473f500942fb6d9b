package peer

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOfReportsOwnProcess(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan Cred, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(done)
			return
		}
		defer c.Close()
		cr, err := Of(c)
		if err != nil {
			t.Error(err)
		}
		done <- cr
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := <-done
	if got.PID != int32(os.Getpid()) || got.UID != uint32(os.Getuid()) || got.GID != uint32(os.Getgid()) {
		t.Errorf("Of = %+v, want pid %d uid %d gid %d", got, os.Getpid(), os.Getuid(), os.Getgid())
	}
}

func TestParseGroups(t *testing.T) {
	status := "Name:\tx\nGroups:\t4 24 27 1000 \nNgid:\t0\n"
	if got, want := parseGroups([]byte(status)), []uint32{4, 24, 27, 1000}; !slices.Equal(got, want) {
		t.Errorf("parseGroups = %v, want %v", got, want)
	}
	if got := parseGroups([]byte("Groups:\t\n")); len(got) != 0 {
		t.Errorf("parseGroups(empty) = %v, want none", got)
	}
}
