package monitor

import (
	"testing"

	libseccomp "github.com/seccomp/libseccomp-golang"
)

func TestSyscallName(t *testing.T) {
	for _, tc := range []struct {
		nr   uint32
		want string
	}{
		{0, "read"},
		{1, "write"},
		{59, "execve"},
		{110, "getppid"},
		{435, "clone3"},
		{462, "mseal"},
		{511, "syscall_511"},
		{PairStart, "(start)"},
		{NrOther, "(other)"},
	} {
		if got := SyscallName(tc.nr); got != tc.want {
			t.Errorf("SyscallName(%d) = %q, want %q", tc.nr, got, tc.want)
		}
	}
	if nr, ok := SyscallNumber("getppid"); !ok || nr != 110 {
		t.Errorf("SyscallNumber(getppid) = %d, %v; want 110, true", nr, ok)
	}
}

// TestSyscallTableMatchesLibseccomp checks the committed table against
// libseccomp for every number libseccomp knows.
func TestSyscallTableMatchesLibseccomp(t *testing.T) {
	checked := 0
	for nr := range uint32(512) {
		want, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64)
		if err != nil || want == "" {
			continue
		}
		checked++
		if got := SyscallName(nr); got != want {
			t.Errorf("syscall %d: table says %q, libseccomp %q", nr, got, want)
		}
	}
	if checked < 300 {
		t.Errorf("libseccomp named only %d syscalls", checked)
	}
}
