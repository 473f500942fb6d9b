package monitor

import (
	_ "embed"
	"strconv"
	"strings"
	"sync"

	"github.com/trustcells/tcc/ebpf"
)

// Special values in pairs and syscall maps.
const (
	// PairStart is the predecessor in the pair of a task's first syscall.
	PairStart = ebpf.PairStart
	// NrOther stands in pairs for a syscall number outside the table.
	NrOther = ebpf.NrOther
)

//go:embed syscalls_amd64.txt
var syscallTable string

var syscallNames = sync.OnceValue(func() map[uint32]string {
	m := make(map[uint32]string)
	for _, line := range strings.Split(syscallTable, "\n") {
		nr, name, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, err := strconv.ParseUint(nr, 10, 32)
		if err != nil {
			continue
		}
		m[uint32(n)] = name
	}
	return m
})

// SyscallName returns the x86_64 name of syscall nr, "syscall_NR" for an
// unknown number, "(start)" for PairStart and "(other)" for NrOther.
func SyscallName(nr uint32) string {
	switch nr {
	case PairStart:
		return "(start)"
	case NrOther:
		return "(other)"
	}
	if name, ok := syscallNames()[nr]; ok {
		return name
	}
	return "syscall_" + strconv.FormatUint(uint64(nr), 10)
}

// SyscallNumber returns the x86_64 number of the named syscall.
func SyscallNumber(name string) (uint32, bool) {
	for nr, n := range syscallNames() {
		if n == name {
			return nr, true
		}
	}
	return 0, false
}

func pairName(p [2]uint32) string {
	return SyscallName(p[0]) + "→" + SyscallName(p[1])
}
