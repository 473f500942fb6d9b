package attack

// Syscall numbers the frozen syscall package lacks on this architecture.
const (
	sysSetns = 308
	sysBPF   = 321
)
