package attack

// Syscall numbers, kept beside the amd64 ones for symmetry.
const (
	sysSetns = 268
	sysBPF   = 280
)
