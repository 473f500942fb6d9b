// Package ebpf owns TCC's BPF programs: the C source (tcc.bpf.c), the
// bpf2go-generated Go bindings and object (committed, so building needs no
// clang; `make generate` rebuilds them), and the loader that attaches the
// programs and manages one watched cell's map entries. The links can be
// taken away and brought back ([Tracer.Detach], [Tracer.Attach]) while the
// programs and maps stay loaded: detached, the programs cost the host's
// syscalls nothing; when to detach is the caller's decision.
//
// The programs attach to tp_btf tracepoints (raw_syscalls/sys_enter and
// sys_exit, sched_process_{fork,exec,exit}) and aggregate per cell in the
// kernel: a syscall histogram, syscall-pair counts, the bytes write-family
// calls wrote and a byte histogram sampled from them at syscall exit,
// process counts and seccomp kills. A cell is a cgroup2 directory,
// identified by its inode number.
//
// The object is built for x86_64 (syscall numbers and pt_regs are the
// x86_64 ones). This package pins nothing in bpffs and must never leave a
// program, link or map entry behind: [Tracer.Close] detaches everything and
// [Cell.Remove] wipes a cell and checks the wipe. It makes raw BPF system
// calls through github.com/cilium/ebpf and does not log.
package ebpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -type cell -type stats -type hist -type pair_key tcc tcc.bpf.c -- -I. -mcpu=v3 -Wall -Werror
