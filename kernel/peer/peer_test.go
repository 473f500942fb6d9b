package peer

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/trustcells/tcc/internal/testutil"
)

// accept listens on a fresh socket and returns its path and the
// credentials Of reads from the first connection.
func accept(t *testing.T) (string, <-chan Cred) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan Cred, 1)
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cr, err := Of(c)
		if err != nil {
			t.Error(err)
			return
		}
		done <- cr
	}()
	return sock, done
}

func TestOfReportsOwnProcess(t *testing.T) {
	sock, done := accept(t)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := <-done
	groups, _ := os.Getgroups()
	want := make([]uint32, len(groups))
	for i, g := range groups {
		want[i] = uint32(g)
	}
	if got.PID != int32(os.Getpid()) || got.UID != uint32(os.Getuid()) || got.GID != uint32(os.Getgid()) || !slices.Equal(got.Groups, want) {
		t.Errorf("Of = %+v, want pid %d uid %d gid %d groups %v", got, os.Getpid(), os.Getuid(), os.Getgid(), want)
	}
}

// connectEnv makes the test binary a helper that connects fd 3 to the
// socket it names and exits (TestGroupsOfExitedPeer).
const connectEnv = "TCC_PEER_TEST_CONNECT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(connectEnv); sock != "" {
		if err := syscall.Connect(3, &syscall.SockaddrUnix{Name: sock}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestGroupsOfExitedPeer: the groups are those of the process that
// connected, recorded by the kernel at connect time, still there after it
// exited (its pid may be anyone's by then).
func TestGroupsOfExitedPeer(t *testing.T) {
	testutil.RequireRoot(t)
	sock, done := accept(t)
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "tcc-peer-test")
	defer f.Close()
	want := []uint32{4711, 4712}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), connectEnv+"="+sock)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: want}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	got := <-done
	if !slices.Equal(got.Groups, want) || got.PID != int32(cmd.Process.Pid) {
		t.Errorf("Of = %+v, want the exited helper's pid %d and groups %v", got, cmd.Process.Pid, want)
	}
}
