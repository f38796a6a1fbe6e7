// SPDX-License-Identifier: GPL-2.0
/*
 * The C twin of examples/hello: the baseline `cargo xtask bench` builds
 * with plain `make -C <tree> M=<dir>` to compare the Rust path against.
 */
#include <linux/module.h>
#include <linux/printk.h>
#include <generated/utsrelease.h>
#include <linux/version.h>

static int __init c_hello_init(void)
{
	pr_info("c_hello: loaded, built for %s (LINUX_VERSION_CODE %#x)\n",
		UTS_RELEASE, LINUX_VERSION_CODE);
	return 0;
}

static void __exit c_hello_exit(void)
{
	pr_info("c_hello: unloaded, goodbye\n");
}

module_init(c_hello_init);
module_exit(c_hello_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmod-build developers");
MODULE_DESCRIPTION("Hello from C: the build-speed baseline for the Rust hello");
