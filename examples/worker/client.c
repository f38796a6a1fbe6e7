/* Reads /dev/worker just after it was loaded with period_ms=2000 (line 0
 * made, line 1 two seconds away), as the boot test expects: an O_NONBLOCK
 * read of a new file gives EAGAIN (a file reads the lines made after its
 * open), a read a signal interrupts (no SA_RESTART) EINTR, then blocking
 * reads get line 1 and, 3 bytes at a time, line 2. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static void on_alarm(int signal) { (void)signal; }

/* One read of up to `size` bytes, printed as `what: <text>` or the error. */
static void show(int fd, size_t size, const char *what)
{
	char text[64];
	ssize_t n = read(fd, text, size < sizeof text ? size : sizeof text - 1);

	if (n < 0) {
		printf("%s: %s\n", what, strerror(errno));
		return;
	}
	text[n] = '\0';
	printf("%s %zd: %s%s", what, n, text, n && text[n - 1] == '\n' ? "" : "\n");
}

int main(void)
{
	struct sigaction action = { .sa_handler = on_alarm };
	struct itimerval soon = { .it_value = { .tv_usec = 200000 } };
	int fd = open("/dev/worker", O_RDONLY | O_NONBLOCK);

	if (fd < 0) {
		perror("open /dev/worker");
		return 1;
	}
	show(fd, 64, "nonblocking read");
	close(fd);

	fd = open("/dev/worker", O_RDONLY);
	if (fd < 0 || sigaction(SIGALRM, &action, NULL) || setitimer(ITIMER_REAL, &soon, NULL)) {
		perror("setting up");
		return 1;
	}
	show(fd, 64, "interrupted read");
	show(fd, 64, "read");
	show(fd, 3, "read");
	show(fd, 64, "read");
	close(fd);
	return 0;
}
