// probe makes the syscalls the kernel tests ask for and reports what the
// filter answered. Built with gcc -static -pthread.
//
//	probe sys NR [ARG...]   raw syscall NR; prints "ret=R errno=E"
//	probe fork              clone(SIGCHLD) + wait4; prints "child=7"
//	probe x32               getpid through the x32 ABI; prints "survived"
//	probe int80             getpid through int 0x80 (i386); prints "survived"
//	probe thread-x32        the same from a second thread, then joins it
//	probe thread-int80
//	probe abort             abort(3): must die of SIGABRT, not SIGSYS
//	probe loop N            N raw getpid calls; prints "ns=<CPU time per call>"
//
// Reaching "survived" means the foreign-ABI call did not kill the process.
// It never does anything harmful when a filter lets a call through: the
// tests only send numbers and arguments that fail or act on the probe itself.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static long x32_getpid(void) {
	return syscall(0x40000000 | SYS_getpid);
}

static long int80_getpid(void) {
	long ret = 20; /* __NR_getpid on i386 */
	__asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
	return ret;
}

static void *thread_main(void *arg) {
	long (*fn)(void) = (long (*)(void))arg;
	fn();
	return NULL;
}

static int in_thread(long (*fn)(void)) {
	pthread_t t;
	int err = pthread_create(&t, NULL, thread_main, (void *)fn);
	if (err != 0) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		return 1;
	}
	pthread_join(t, NULL);
	puts("survived");
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fputs("usage: probe sys|fork|abort|loop|x32|int80|thread-x32|thread-int80 ...\n", stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "sys") == 0 && argc >= 3) {
		long a[7] = {0};
		for (int i = 2; i < argc && i < 9; i++) {
			a[i - 2] = (long)strtoul(argv[i], NULL, 0);
		}
		errno = 0;
		long ret = syscall(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
		printf("ret=%ld errno=%d\n", ret, ret == -1 ? errno : 0);
		return 0;
	}
	if (strcmp(cmd, "fork") == 0) {
		long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) {
			_exit(7);
		}
		if (pid < 0) {
			printf("clone errno=%d\n", errno);
			return 1;
		}
		int status = 0;
		if (waitpid((pid_t)pid, &status, 0) < 0) {
			printf("wait errno=%d\n", errno);
			return 1;
		}
		printf("child=%d\n", WEXITSTATUS(status));
		return 0;
	}
	if (strcmp(cmd, "loop") == 0 && argc == 3) {
		long n = strtol(argv[2], NULL, 0);
		struct timespec a, b;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
		for (long i = 0; i < n; i++) {
			syscall(SYS_getpid);
		}
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
		double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
		printf("ns=%.1f\n", ns / (double)n);
		return 0;
	}
	if (strcmp(cmd, "abort") == 0) {
		abort();
	}
	if (strcmp(cmd, "x32") == 0) {
		x32_getpid();
		puts("survived");
		return 0;
	}
	if (strcmp(cmd, "int80") == 0) {
		int80_getpid();
		puts("survived");
		return 0;
	}
	if (strcmp(cmd, "thread-x32") == 0) {
		return in_thread(x32_getpid);
	}
	if (strcmp(cmd, "thread-int80") == 0) {
		return in_thread(int80_getpid);
	}
	fprintf(stderr, "probe: unknown command %s\n", cmd);
	return 2;
}
