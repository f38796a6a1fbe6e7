// The user-space side of /dev/counter, built static for the boot test's
// initramfs (and with -m32 for compat_ioctl). Prints one line per step.
#include <errno.h>
#include <fcntl.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
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
	return 0;
}
