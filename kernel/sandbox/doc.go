// Package sandbox owns the throwaway sandbox of one cell call, built with
// runc's libcontainer as a library: namespaces, the root filesystem,
// cgroups, rlimits, capabilities, the seccomp filter it is handed, and the
// wipe that removes all of it and checks that nothing remains.
//
// A sandbox lives exactly as long as its call, in three steps kept apart
// so that a pool of prepared, single-use sandboxes can come later:
//
//	sb, err := m.Prepare(ctx, spec) // runc init set up, parked on its exec fifo
//	id := sb.CgroupID()             // the monitor keys its BPF maps on it
//	err = sb.Launch()               // runc init execs the cell's binary
//	exit, err := sb.Wait(ctx)       // ctx bounds the wait; sb.Kill() ends the cell
//	st, err := sb.Stats()           // peak memory, CPU, OOM kills, pids-limit hits
//	report := sb.Destroy()          // kill, remove, check, report
//
// Every sandbox has new pid, mount, network (loopback only), ipc, uts,
// cgroup and, unless Config.NoUserNS, user namespaces; the cell runs as a
// non-root uid with no capabilities, no_new_privs and the caller's seccomp
// filter, on a read-only tmpfs root that holds only /cell (its files: the
// very files the caller opened, bound read-only) and, if declared, /tmp,
// /dev nodes and /proc. Its cgroup
// (CgroupParent/ID, absolute) limits memory without swap, tasks and CPU.
// docs/notes/002-sandbox.md explains the choices and gives the costs.
//
// Binaries that prepare sandboxes must call Init first thing in main (and
// in TestMain), must be built with cgo and -tags seccomp (the package does
// not compile otherwise), and must run as root. The daemon calls
// Manager.Sweep at start-up to remove what a crashed predecessor left.
//
// This package never decides policy: limits, files and the filter come in
// the Spec, from the manifest, through the kernel package. It never builds
// seccomp filters (kernel/seccomp does), never logs (libcontainer itself
// logs warnings through logrus's standard logger), and never touches a
// cgroup, mount or directory outside CgroupParent and Config.Root.
package sandbox
