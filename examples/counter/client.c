// The user-space side of /dev/counter, built static for the boot test's
// initramfs (and with -m32 for compat_ioctl). Prints one line per step.
#include <errno.h>
#include <fcntl.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct counter_add {
	__u64 amount;
	__u64 value;
};

#define COUNTER_GET _IOR('k', 1, __u64)
#define COUNTER_SET _IOW('k', 2, __u64)
#define COUNTER_ADD _IOWR('k', 3, struct counter_add)
#define COUNTER_RESET _IO('k', 4)
// GET's number with another argument size: a different command.
#define COUNTER_GET32 _IOR('k', 1, __u32)

static void report(const char *step, int rc)
{
	if (rc < 0)
		printf("%s: %s\n", step, strerror(errno));
}

// Whether `pid` is asleep (interruptibly, state S), waiting up to 5 s.
static const char *asleep(pid_t pid)
{
	char path[64], stat[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 500; i++) {
		FILE *file = fopen(path, "r");
		if (file) {
			size_t n = fread(stat, 1, sizeof(stat) - 1, file);
			fclose(file);
			stat[n] = 0;
			char *end = strrchr(stat, ')');
			if (end && end[1] == ' ' && end[2] == 'S')
				return "asleep";
		}
		usleep(10000);
	}
	return "not asleep";
}

static void on_signal(int signal)
{
	(void)signal;
}

// A child that polls then reads (or only reads) `fd`, woken by `wake`.
static void child_reads(int fd, int polls, void (*wake)(int fd, pid_t child))
{
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		__u64 got = 0;
		if (polls) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int ready = poll(&pfd, 1, 10000);
			printf("child poll %d, revents %#x\n", ready, pfd.revents);
		}
		if (read(fd, &got, sizeof(got)) < 0)
			printf("child read: %s\n", strerror(errno));
		else
			printf("child read %llu\n", (unsigned long long)got);
		fflush(stdout);
		_exit(0);
	}
	printf("child %s\n", asleep(child));
	wake(fd, child);
	waitpid(child, NULL, 0);
}

static void add_one(int fd, pid_t child)
{
	(void)child;
	struct counter_add add = { .amount = 1 };
	report("wake add", ioctl(fd, COUNTER_ADD, &add));
}

static void interrupt(int fd, pid_t child)
{
	(void)fd;
	kill(child, SIGUSR1);
}

int main(void)
{
	int fd = open("/dev/counter", O_RDWR);
	if (fd < 0) {
		perror("/dev/counter");
		return 1;
	}
	__u64 value = 41;
	report("set", ioctl(fd, COUNTER_SET, &value));
	value = 0;
	report("get", ioctl(fd, COUNTER_GET, &value));
	printf("get %llu\n", (unsigned long long)value);
	struct counter_add add = { .amount = 1 };
	report("add", ioctl(fd, COUNTER_ADD, &add));
	printf("add 1 -> %llu\n", (unsigned long long)add.value);
	add.amount = ~0ULL;
	report("add max", ioctl(fd, COUNTER_ADD, &add));
	report("reset", ioctl(fd, COUNTER_RESET));
	report("get", ioctl(fd, COUNTER_GET, &value));
	printf("after reset %llu\n", (unsigned long long)value);
	__u32 small;
	report("get32", ioctl(fd, COUNTER_GET32, &small));
	report("unknown", ioctl(fd, _IO('k', 99)));
	report("bad pointer", ioctl(fd, COUNTER_GET, (void *)8));
	int other = open("/dev/counter", O_RDWR);
	report("other get", ioctl(other, COUNTER_GET, &value));
	printf("other open %llu\n", (unsigned long long)value);
	close(other);
	close(fd);

	// A new file has no change to read: EAGAIN, and poll says so.
	fd = open("/dev/counter", O_RDWR | O_NONBLOCK);
	__u64 got = 0;
	report("nonblocking read", read(fd, &got, sizeof(got)));
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int ready = poll(&pfd, 1, 0);
	printf("poll %d, revents %#x\n", ready, pfd.revents);
	value = 7;
	report("set", ioctl(fd, COUNTER_SET, &value));
	ready = poll(&pfd, 1, 0);
	printf("poll %d, revents %#x\n", ready, pfd.revents);
	ssize_t n = read(fd, &got, sizeof(got));
	printf("read %d: %llu\n", (int)n, (unsigned long long)got);
	report("read again", read(fd, &got, sizeof(got)));
	// Blocking: a child's poll, then its read, sleep until an ioctl; a
	// signal ends the read with EINTR (no SA_RESTART).
	report("blocking", fcntl(fd, F_SETFL, 0));
	child_reads(fd, 1, add_one);
	child_reads(fd, 0, add_one);
	struct sigaction action = { .sa_handler = on_signal };
	report("sigaction", sigaction(SIGUSR1, &action, NULL));
	child_reads(fd, 0, interrupt);
	close(fd);
	return 0;
}
