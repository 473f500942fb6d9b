// Package monitor is the userspace half of TCC's eBPF monitoring: it
// watches cells through the programs of package ebpf and turns their
// kernel-side counters into fingerprints, baselines and deviation scores.
//
// A cell is watched by the inode number of its cgroup2 directory (what
// bpf_get_current_cgroup_id returns). [Monitor.Watch] is called after the
// sandbox is started and before the cell binary is exec'd; by default
// counting starts at that exec, so the sandbox's own set-up is not part of
// the cell's fingerprint. [Watch.Poll] is cheap enough for a 10 ms loop,
// [Watch.Notify] wakes the caller when the kernel sees something notable
// (a novel syscall pair, a seccomp kill, a lost event), and [Watch.Close]
// returns the final counters and wipes and checks every kernel entry of the
// cell.
//
// The package decides nothing: [Score] says how far a run is from its
// [Baseline] and why ([ScoreWith] also judges the contract's declared
// entropy band and weighs the runtime's timing noise low, see [Expect]);
// the caller applies the manifest's policy. Counters that report lost
// events or could not be read ([Counters.Lost]) mean the fingerprint is
// incomplete, and the caller must fail closed. A baseline learns from
// probation runs ([Learn]) and, later, only from runs it already covers
// ([Baseline.Refine]).
//
// The programs stay loaded for the Monitor's life but are attached only
// while a cell is watched and for [Options.IdleDetach] after the last
// Watch.Close, so that an idle host's syscalls do not run them; a Watch
// attaches them again before it returns.
//
// It must never keep a cell's data after Watch.Close, pin BPF objects or
// log; syscall names are x86_64 only.
package monitor

//go:generate go run ./internal/mksyscalls -o syscalls_amd64.txt
