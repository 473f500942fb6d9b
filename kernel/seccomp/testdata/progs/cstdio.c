// cstdio is the smallest realistic C cell: it copies stdin to stdout with
// stdio, writes one line to stderr and exits 0. Built with gcc -static and,
// where installed, musl-gcc -static, it is what the base group is measured on.
#include <stdio.h>

int main(void) {
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			return 1;
		}
	}
	if (ferror(stdin)) {
		return 2;
	}
	fputs("cstdio: done\n", stderr);
	return fflush(stdout) == 0 ? 0 : 3;
}
