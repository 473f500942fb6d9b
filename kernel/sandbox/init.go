package sandbox

import (
	"fmt"
	"os"

	"github.com/cyphar/filepath-securejoin/pathrs-lite/procfs"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor does the namespace set-up of "runc init"
	// before the Go runtime starts; it does nothing in other processes.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init is the libcontainer init hook. Every binary that prepares sandboxes
// (the daemon's main, and TestMain of any test that starts one) must call it
// first thing: libcontainer starts each sandbox by re-executing the current
// binary as "<argv0> init", and in that process Init becomes the sandbox's
// init and never returns. In any other process it returns at once.
//
// hooks run only in that init process, in the sandbox's namespaces (not yet
// in its root filesystem), before libcontainer takes over; the daemon passes
// kernel/seccomp's InstallArchGuard. A hook's error aborts the sandbox's
// start (Prepare fails).
func Init(hooks ...func() error) {
	if len(os.Args) < 2 || os.Args[1] != "init" || os.Getenv("_LIBCONTAINER_INITPIPE") == "" {
		return
	}
	// After pivot_root, runc init still uses procfs: the capability
	// package reads /proc/sys/kernel/cap_last_cap, and the exec fifo is
	// reopened through /proc/thread-self/fd. A sandbox has no /proc (or
	// one with subset=pid), and in a user namespace runc init cannot make
	// a private procfs once the host's /proc is unmounted (the kernel's
	// mount_too_revealing check). Both packages cache what they open
	// first, so open them now, while the host's /proc is still mounted:
	// we are already in the sandbox's namespaces, so the procfs handle is
	// the sandbox's own pid namespace's (subset=pid). The handle is
	// close-on-exec and runc closes every fd before the cell's exec.
	_, _ = capability.LastCap()
	_, _ = procfs.OpenProcRoot()
	for _, h := range hooks {
		if err := h(); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox init:", err)
			os.Exit(255)
		}
	}
	libcontainer.Init() // never returns
}
