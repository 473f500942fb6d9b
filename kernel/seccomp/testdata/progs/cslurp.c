// cslurp is a C cell that holds its whole input in memory: it reads stdin
// into a buffer grown with realloc, then writes it back. Large inputs take
// glibc's and musl's mmap/mremap paths, which cstdio never reaches.
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (buf == NULL) {
		return 1;
	}
	for (;;) {
		if (len == cap) {
			cap *= 2;
			char *nbuf = realloc(buf, cap);
			if (nbuf == NULL) {
				return 1;
			}
			buf = nbuf;
		}
		ssize_t n = read(0, buf + len, cap - len);
		if (n < 0) {
			return 2;
		}
		if (n == 0) {
			break;
		}
		len += (size_t)n;
	}
	for (size_t off = 0; off < len;) {
		ssize_t n = write(1, buf + off, len - off);
		if (n <= 0) {
			return 3;
		}
		off += (size_t)n;
	}
	free(buf);
	return 0;
}
