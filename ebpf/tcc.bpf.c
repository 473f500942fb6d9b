//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-cell syscall fingerprints, aggregated in the kernel.
 *
 * A cell is a cgroup2 directory; its inode number (bpf_get_current_cgroup_id)
 * is the key of tcc_cells. Every program first looks that up and returns at
 * once for any task outside a watched cell, so the host pays one hash lookup
 * per syscall entry (at exit, only write-family calls get that far).
 * Counters live in per-CPU array slots (no atomics on the hot path);
 * userspace sums the CPUs when it reads a cell.
 *
 * seccomp runs before raw_syscalls/sys_enter: a syscall that the filter
 * denies (errno, trap or kill) never reaches tcc_sys_enter. Kills are seen
 * at sched_process_exit instead (see tcc_exit).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NR_SLOTS 512     /* histogram slots: x86_64 numbers are < 512 */
#define NR_OTHER 0xfffe  /* pair element for a number >= NR_SLOTS */
#define NR_START 0xffff  /* pair predecessor of a task's first syscall */
#define MAX_KILLS 8
#define KILL_COMPAT 0x80000000 /* kill_nr flag: an ia32 (int 0x80) number */

#define SAMPLE_MAX 1024  /* bytes sampled of one call's output */
#define CHUNK 256        /* bytes per sampled chunk; a long output gets 4 */
#define MMSG_SAMPLED 4   /* messages sampled per sendmmsg */
#define UIO_MAXIOV 1024  /* the kernel's bound on iovecs and mmsg messages */

#define TS_COMPAT 0x0002        /* x86 thread_info.status: ia32 syscall */
#define SECCOMP_MODE_DEAD 3     /* kernel/seccomp.c: set before a kill */
#define EEXIST 17

#define SYS_write 1
#define SYS_pwrite64 18
#define SYS_writev 20
#define SYS_sendto 44
#define SYS_sendmsg 46
#define SYS_vmsplice 278
#define SYS_pwritev 296
#define SYS_sendmmsg 307
#define SYS_pwritev2 328

/* cell.flags */
#define CELL_ARMED 1          /* counting */
#define CELL_ARM_AT_EXEC 2    /* set CELL_ARMED at the first exec */
#define CELL_KNOWN_PAIRS 4    /* tcc_known holds this cell's baseline pairs */

/* Written by userspace at Watch; BPF sets CELL_ARMED and counts pairs. */
struct cell {
	__u32 slot;        /* index into tcc_stats and tcc_hist */
	__u32 flags;
	__u32 pairs;       /* distinct pairs inserted into tcc_pairs */
	__u32 pair_budget; /* at most this many, so no cell can starve another */
};

/* Per-CPU; userspace sums the CPUs. */
struct stats {
	__u64 syscalls;
	__u64 other;          /* numbers outside [0, NR_SLOTS) */
	__u64 compat;         /* ia32 syscalls (int 0x80): not in the histogram */
	__u64 bytes_written;  /* written by write-family calls: their return values */
	__u64 bytes_sampled;
	__u64 unsampled;      /* pieces of written output that could not be read */
	__u64 forks;          /* new processes */
	__u64 threads;        /* new threads */
	__u64 execs;
	__u64 exits;          /* processes whose last thread exited */
	__u64 novel_pairs;    /* new pairs not in tcc_known */
	__u64 pair_overflow;  /* new pairs beyond pair_budget: not recorded */
	__u64 dropped;        /* events lost: a map full, no memory */
	__u64 kills;          /* tasks killed by seccomp */
	__u32 kill_nr[MAX_KILLS]; /* denied syscall, | KILL_COMPAT for ia32 */
	__u64 kill_ns[MAX_KILLS]; /* when (boot clock): orders kills across CPUs */
};

struct hist {
	__u64 sys[NR_SLOTS];
	__u64 bytes[256];
};

struct pair_key {
	__u64 cgid;
	__u32 prev;
	__u32 nr;
};

struct task_state {
	__u32 prev; /* previous syscall number + 1; 0: none yet */
};

/*
 * Set by the loader from the kernel's BTF: sched_process_exit has a second
 * argument, group_dead (Linux 6.16 on). Read-only, so the verifier drops
 * the branch that reads it on kernels without it.
 */
volatile const bool exit_has_group_dead;

/* Userspace struct layouts (x86_64 ABI); read with bpf_probe_read_user. */
struct u_iovec {
	__u64 base;
	__u64 len;
};

struct u_msghdr {
	__u64 name;
	__u32 namelen;
	__u32 pad;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
};

#define MMSGHDR_SIZE 64   /* struct mmsghdr: msghdr (56) + msg_len + padding */
#define MMSG_LEN_OFF 56   /* msg_len: bytes the kernel sent of that message */

/* The loader sets max_entries of tcc_cells, _stats, _hist, _pairs, _known. */
/*
 * Not preallocated: a deleted element is freed after an RCU grace period,
 * so a program still holding it (it looked the cell up just before Remove)
 * writes to the old cell, never to one that reuses the element at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct cell);
} tcc_cells SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} tcc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} tcc_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct pair_key);
	__type(value, __u64);
} tcc_pairs SEC(".maps");

/* Baseline pairs; only userspace writes, so no preallocation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct pair_key);
	__type(value, __u8);
} tcc_known SEC(".maps");

/* Per-CPU buffer for sampled bytes: too big for the 512-byte stack. */
struct scratch {
	__u8 buf[SAMPLE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} tcc_scratch SEC(".maps");

/* Freed by the kernel with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tcc_task SEC(".maps");

/* Notifications: the cgroup id of a cell worth reading now. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} tcc_events SEC(".maps");

static __always_inline void notify(__u64 cgid)
{
	/* A lost notification loses no count: userspace also polls. */
	bpf_ringbuf_output(&tcc_events, &cgid, sizeof(cgid), 0);
}

static __always_inline void drop(__u64 cgid, struct stats *st)
{
	if (st->dropped++ == 0)
		notify(cgid);
}

/* cell returns the watched cell of the current task, or NULL. */
static __always_inline struct cell *cell(__u64 *cgid, struct stats **st)
{
	struct cell *c;
	__u32 slot;

	*cgid = bpf_get_current_cgroup_id();
	c = bpf_map_lookup_elem(&tcc_cells, cgid);
	if (!c)
		return 0;
	slot = c->slot;
	*st = bpf_map_lookup_elem(&tcc_stats, &slot);
	if (!*st)
		return 0;
	return c;
}

/*
 * Output sampling runs at syscall exit, over the bytes the call actually
 * wrote (its return value): the length a cell passes at entry is its own
 * to choose, and so is how much of a buffer is mapped. The kernel has just
 * copied those bytes, so they are resident and a read that fails is
 * counted (unsampled) rather than expected.
 *
 * The sampling functions are global, so that the verifier checks each once
 * rather than at every call site; they take the slot, not map pointers,
 * which global functions cannot receive.
 */

/* sample_chunk adds n (<= SAMPLE_MAX) bytes at uptr to the byte histogram. */
__noinline int sample_chunk(__u32 slot, __u64 uptr, __u64 n)
{
	__u32 zero = 0;
	struct stats *st = bpf_map_lookup_elem(&tcc_stats, &slot);
	struct hist *h = bpf_map_lookup_elem(&tcc_hist, &slot);
	struct scratch *s = bpf_map_lookup_elem(&tcc_scratch, &zero);

	if (!st || !h || !s || n == 0)
		return 0;
	if (n > SAMPLE_MAX)
		n = SAMPLE_MAX;
	/* One read per chunk: each bpf_probe_read_user costs far more than
	 * the bytes it copies. */
	if (bpf_probe_read_user(s->buf, n, (const void *)uptr)) {
		st->unsampled++;
		return 0;
	}
	st->bytes_sampled += n;
	for (__u32 i = 0; i < SAMPLE_MAX; i++) {
		if (i >= n)
			break;
		h->bytes[s->buf[i]]++;
	}
	return 0;
}

/*
 * What to read of n written bytes, with budget SAMPLE_MAX or CHUNK: all
 * of them if they fit; otherwise budget/CHUNK chunks, one at a random
 * offset in each of as many equal segments, so the tail of a long output
 * is seen too and a cell cannot predict which bytes are read. Offsets
 * ascend and chunks do not overlap.
 */
struct plan {
	__u64 want;   /* offset of the next byte to read */
	__u64 need;   /* bytes still to read from there */
	__u64 seg;    /* segment length; 0: one read of everything */
	__u32 k;      /* current chunk */
	__u32 chunks;
};

static __always_inline void plan_start(struct plan *p, __u64 n, __u32 budget)
{
	p->k = 0;
	if (n <= budget) {
		p->want = 0, p->need = n, p->seg = 0, p->chunks = 1;
		return;
	}
	p->chunks = budget / CHUNK;
	p->seg = n / p->chunks; /* >= CHUNK, since n > chunks * CHUNK */
	p->want = bpf_get_prandom_u32() % (p->seg - CHUNK + 1);
	p->need = CHUNK;
}

/* plan_next moves to the next chunk; false when all are read. */
static __always_inline bool plan_next(struct plan *p)
{
	if (++p->k >= p->chunks)
		return false;
	p->want = p->k * p->seg + bpf_get_prandom_u32() % (p->seg - CHUNK + 1);
	p->need = CHUNK;
	return true;
}

/* sample_buf samples n bytes written from one buffer at uptr. */
__noinline int sample_buf(__u32 slot, __u64 uptr, __u64 n, __u32 budget)
{
	struct plan p;

	if (budget != SAMPLE_MAX && budget != CHUNK)
		return 0;
	plan_start(&p, n, budget);
	for (__u32 i = 0; i < SAMPLE_MAX / CHUNK; i++) {
		sample_chunk(slot, uptr + p.want, p.need);
		if (!plan_next(&p))
			break;
	}
	return 0;
}

/* sample_unreadable counts output that could not be read. */
__noinline int sample_unreadable(__u32 slot)
{
	struct stats *st = bpf_map_lookup_elem(&tcc_stats, &slot);

	if (st)
		st->unsampled++;
	return 0;
}

/* An iovec array walked as one logical buffer of n bytes (bpf_loop). */
struct iov_walk {
	struct plan p;
	__u64 uiov;
	__u64 pos;   /* logical offset of the current iovec */
	__u64 n;
	__u32 slot;
};

/*
 * iov_visit reads iovec i and the planned bytes in it; 1 stops the walk.
 * Global, so that the verifier checks it once: as a bpf_loop callback its
 * changing plan would be walked again for every iteration it can tell
 * apart.
 */
__noinline long iov_visit(__u64 i, struct iov_walk *w)
{
	struct u_iovec iov;
	__u64 end;

	if (!w)
		return 1;
	if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(w->uiov + i * sizeof(iov)))) {
		sample_unreadable(w->slot);
		return 1;
	}
	end = w->pos + iov.len;
	/* At most one chunk ends and the next starts per step. */
	for (__u32 j = 0; j < SAMPLE_MAX / CHUNK + 1; j++) {
		__u64 len;

		if (w->p.want >= end || w->p.want >= w->n)
			break;
		len = end - w->p.want;
		if (len > w->p.need)
			len = w->p.need;
		sample_chunk(w->slot, iov.base + (w->p.want - w->pos), len);
		w->p.want += len;
		w->p.need -= len;
		if (w->p.need == 0 && !plan_next(&w->p))
			return 1;
	}
	w->pos = end;
	return w->pos >= w->n;
}

static long iov_step(__u64 i, void *w)
{
	return iov_visit(i, w) ? 1 : 0;
}

/* sample_iov samples n bytes written from cnt iovecs at uiov. */
__noinline int sample_iov(__u32 slot, __u64 uiov, __u64 cnt, __u64 n, __u32 budget)
{
	struct iov_walk w = { .uiov = uiov, .n = n, .slot = slot };

	if (budget != SAMPLE_MAX && budget != CHUNK)
		return 0;
	if (cnt > UIO_MAXIOV)
		cnt = UIO_MAXIOV;
	plan_start(&w.p, n, budget);
	bpf_loop(cnt, iov_step, &w, 0);
	return 0;
}

/* sample_msg samples n bytes sent from the msghdr at umsg. */
__noinline int sample_msg(__u32 slot, __u64 umsg, __u64 n, __u32 budget)
{
	struct u_msghdr msg;

	if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)umsg)) {
		sample_unreadable(slot);
		return 0;
	}
	return sample_iov(slot, msg.iov, msg.iovlen, n, budget);
}

/* sendmmsg returns the messages sent; each one's msg_len says its bytes. */
struct mmsg_sum {
	__u64 vec;
	__u64 bytes;
	bool bad;
};

static long mmsg_len(__u64 i, struct mmsg_sum *m)
{
	__u32 len;

	if (bpf_probe_read_user(&len, sizeof(len), (const void *)(m->vec + i * MMSGHDR_SIZE + MMSG_LEN_OFF))) {
		m->bad = true;
		return 1;
	}
	m->bytes += len;
	return 0;
}

/* sample_mmsg counts and samples the sent messages of a sendmmsg: up to
 * MMSG_SAMPLED of them, one CHUNK each, chosen like chunks of a buffer. */
__noinline int sample_mmsg(__u32 slot, __u64 vec, __u64 sent)
{
	struct stats *st = bpf_map_lookup_elem(&tcc_stats, &slot);
	struct mmsg_sum m = { .vec = vec };
	__u64 seg = 1, idx;
	__u32 len, chunks = MMSG_SAMPLED;

	if (!st)
		return 0;
	if (sent > UIO_MAXIOV)
		sent = UIO_MAXIOV;
	bpf_loop(sent, mmsg_len, &m, 0);
	st->bytes_written += m.bytes;
	if (m.bad)
		st->unsampled++;
	if (sent <= MMSG_SAMPLED)
		chunks = sent;
	else
		seg = sent / MMSG_SAMPLED;
	for (__u32 k = 0; k < MMSG_SAMPLED; k++) {
		if (k >= chunks)
			break;
		idx = k * seg + bpf_get_prandom_u32() % seg;
		if (bpf_probe_read_user(&len, sizeof(len), (const void *)(vec + idx * MMSGHDR_SIZE + MMSG_LEN_OFF))) {
			st->unsampled++;
			continue;
		}
		sample_msg(slot, vec + idx * MMSGHDR_SIZE, len, CHUNK);
	}
	return 0;
}

static __always_inline void count_pair(__u64 cgid, struct cell *c, struct stats *st, __u32 nr)
{
	struct task_state *ts;
	struct pair_key k = { .cgid = cgid, .nr = nr };
	__u64 one = 1, *n;
	long err;

	ts = bpf_task_storage_get(&tcc_task, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ts) {
		drop(cgid, st);
		return;
	}
	k.prev = ts->prev ? ts->prev - 1 : NR_START;
	ts->prev = nr + 1;

	n = bpf_map_lookup_elem(&tcc_pairs, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	/* Racy read: concurrent CPUs may overshoot the budget by a few;
	 * the map has room for that (see the loader). */
	if (c->pairs >= c->pair_budget) {
		if (st->pair_overflow++ == 0)
			notify(cgid);
		return;
	}
	err = bpf_map_update_elem(&tcc_pairs, &k, &one, BPF_NOEXIST);
	if (err == -EEXIST) { /* another CPU inserted it first */
		n = bpf_map_lookup_elem(&tcc_pairs, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}
	if (err) {
		drop(cgid, st);
		return;
	}
	__sync_fetch_and_add(&c->pairs, 1);
	if ((c->flags & CELL_KNOWN_PAIRS) && !bpf_map_lookup_elem(&tcc_known, &k)) {
		/* Notify the 1st, 2nd, 4th, 8th... novel pair (per CPU): the
		 * first few wake userspace at once, since one may not be enough
		 * to deviate; a cell making thousands cannot flood the ring. */
		__u64 n = ++st->novel_pairs;

		if ((n & (n - 1)) == 0)
			notify(cgid);
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tcc_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task;
	struct stats *st;
	struct cell *c;
	__u64 cgid;
	__u32 nr, slot;

	c = cell(&cgid, &st);
	if (!c || !(c->flags & CELL_ARMED))
		return 0;
	slot = c->slot;

	/* ia32 numbers mean other calls: keep them out of the fingerprint. */
	task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT) {
		if (st->compat++ == 0)
			notify(cgid);
		return 0;
	}

	st->syscalls++;
	if (id >= 0 && id < NR_SLOTS) {
		nr = id;
		struct hist *h = bpf_map_lookup_elem(&tcc_hist, &slot);
		if (h)
			h->sys[nr]++;
	} else {
		nr = NR_OTHER;
		st->other++;
	}
	count_pair(cgid, c, st, nr);
	return 0;
}

/*
 * A write-family exit: what the call wrote (its return value) is counted
 * and sampled. The argument registers are as at entry: the kernel does
 * not write them back for these calls.
 */
static __always_inline int written(__u32 nr, __u64 buf, __u64 cnt, long ret)
{
	struct stats *st;
	struct cell *c;
	__u64 cgid;
	__u32 slot;

	if (ret <= 0)
		return 0;
	c = cell(&cgid, &st);
	if (!c || !(c->flags & CELL_ARMED))
		return 0;
	slot = c->slot;
	switch (nr) {
	case SYS_write:
	case SYS_pwrite64:
	case SYS_sendto:
		st->bytes_written += ret;
		sample_buf(slot, buf, ret, SAMPLE_MAX);
		break;
	case SYS_writev:
	case SYS_pwritev:
	case SYS_pwritev2:
	case SYS_vmsplice:
		st->bytes_written += ret;
		sample_iov(slot, buf, cnt, ret, SAMPLE_MAX);
		break;
	case SYS_sendmsg:
		st->bytes_written += ret;
		sample_msg(slot, buf, ret, SAMPLE_MAX);
		break;
	case SYS_sendmmsg:
		sample_mmsg(slot, buf, ret);
		break;
	}
	return 0;
}

/*
 * Every syscall exit on the machine enters this program; all but the
 * write family's return after two comparisons, before the cell lookup.
 * (fexit programs on the write-family syscalls alone would spare the
 * others even that, but the kernels this was built on refuse to load
 * fexit programs: docs/notes/004-monitor.md.)
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(tcc_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task;
	__u64 nr;

	if (ret <= 0)
		return 0;
	nr = regs->orig_ax;
	switch (nr) {
	case SYS_write:
	case SYS_pwrite64:
	case SYS_sendto:
	case SYS_writev:
	case SYS_pwritev:
	case SYS_pwritev2:
	case SYS_vmsplice:
	case SYS_sendmsg:
	case SYS_sendmmsg:
		break;
	default:
		return 0;
	}
	task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT)
		return 0; /* counted at entry as ia32; the numbers differ */
	return written(nr, regs->si, regs->dx, ret);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tcc_fork, struct task_struct *parent, struct task_struct *child)
{
	struct stats *st;
	struct cell *c;
	__u64 cgid;

	c = cell(&cgid, &st);
	if (!c || !(c->flags & CELL_ARMED))
		return 0;
	if (child->pid == child->tgid)
		st->forks++;
	else
		st->threads++;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tcc_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct stats *st;
	struct cell *c;
	__u64 cgid;

	c = cell(&cgid, &st);
	if (!c)
		return 0;
	if (!(c->flags & CELL_ARMED)) {
		if (!(c->flags & CELL_ARM_AT_EXEC))
			return 0;
		c->flags |= CELL_ARMED;
	}
	st->execs++;
	return 0;
}

/*
 * Seccomp kill attribution. A SECCOMP_RET_KILL_{PROCESS,THREAD} verdict sets
 * the offending task's seccomp.mode to SECCOMP_MODE_DEAD and exits it with
 * its registers as they were at syscall entry, so orig_ax still holds the
 * denied number (an ia32 one if TS_COMPAT is set: the task dies inside
 * that syscall, before the flag is cleared on the way back to user mode).
 * Other threads of a killed process exit with their mode untouched, and a
 * SIGSYS sent by kill(2) or SECCOMP_RET_TRAP never sets the mode, so
 * exactly the offending tasks are recorded. Kills count even before the
 * cell is armed: runc init can be killed by the filter it loads.
 *
 * A process exit is the exit of its last thread: the tracepoint's
 * group_dead (Linux 6.16 on). Reading signal->live here instead would race
 * with threads exiting together; older kernels count the thread group
 * leader's exit, which overcounts a process whose non-leader thread execs.
 */
SEC("tp_btf/sched_process_exit")
int tcc_exit(unsigned long long *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx[0];
	struct stats *st;
	struct cell *c;
	__u64 cgid;
	bool last;

	c = cell(&cgid, &st);
	if (!c)
		return 0;
	if (p->seccomp.mode == SECCOMP_MODE_DEAD) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(p);
		__u32 nr = regs ? regs->orig_ax : NR_OTHER;
		__u64 i = st->kills++;

		if (p->thread_info.status & TS_COMPAT)
			nr |= KILL_COMPAT;
		if (i < MAX_KILLS) {
			st->kill_nr[i] = nr;
			st->kill_ns[i] = bpf_ktime_get_boot_ns();
		}
		notify(cgid);
	}
	if (!(c->flags & CELL_ARMED))
		return 0;
	if (exit_has_group_dead)
		last = ctx[1];
	else
		last = p->pid == p->tgid;
	if (last)
		st->exits++;
	return 0;
}
