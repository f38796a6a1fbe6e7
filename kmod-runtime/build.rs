//! Bindings and the C shim of the runtime, generated from the tree that
//! `cargo xtask build-module` names in `KMOD_BUILD_KERNEL`: every module's
//! target directory is per release, so the bindings of two kernels never mix.
fn main() {
    // `cargo kmod test` builds with `--cfg kmod_test`.
    println!("cargo::rustc-check-cfg=cfg(kmod_test)");
    kmod_build::Build::new("kmod_runtime")
        .header("linux/module.h")
        .header("linux/moduleparam.h")
        .header("linux/printk.h")
        .header("linux/slab.h")
        .header("linux/uaccess.h")
        .header("linux/spinlock.h")
        .header("linux/mutex.h")
        .header("linux/miscdevice.h")
        .header("linux/fs.h")
        .header("linux/timer.h")
        .header("linux/jiffies.h")
        .header("linux/proc_fs.h")
        .header("linux/seq_file.h")
        .header("linux/bug.h")
        .header("linux/version.h")
        .header("linux/ioctl.h")
        .header("linux/wait.h")
        .header("linux/poll.h")
        .header("linux/sched/signal.h")
        .header("linux/kthread.h")
        .header("linux/workqueue.h")
        .header("linux/completion.h")
        .header("linux/delay.h")
        .allow_function("_printk")
        .allow_function("kernel_param_lock|kernel_param_unlock")
        // 6.10 renamed the allocator's entry points behind `alloc_hooks`.
        .allow_function("krealloc|krealloc_noprof|kfree")
        .allow_function("misc_register|misc_deregister|compat_ptr_ioctl")
        .allow_function("mutex_unlock|mod_timer|timer_shutdown_sync")
        .allow_function("proc_create_single_data|remove_proc_entry|seq_write")
        .allow_function("__init_waitqueue_head|init_wait_entry|finish_wait|schedule")
        // In-kernel tests' threads (`test.rs`).
        .allow_function("wait_for_completion|kthread_complete_and_exit")
        .allow_function("cancel_work_sync|complete|complete_all|wait_for_completion_interruptible")
        .allow_function("msleep")
        .allow_type("file_operations|completion|miscdevice|kernel_param|lock_class_key")
        .allow_var("__this_module|param_ops_(int|bool|charp)|jiffies")
        .allow_var("KERN_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)")
        .allow_var("LINUX_VERSION_CODE|MISC_DYNAMIC_MINOR|O_NONBLOCK")
        .allow_var("E(PERM|NOENT|INTR|IO|NXIO|AGAIN|NOMEM|FAULT|BUSY|EXIST|NODEV|INVAL|NOSPC|RANGE|OVERFLOW|NOTTY|RESTARTSYS)")
        .constant("GFP_KERNEL", "gfp_t")
        .constant("GFP_ATOMIC", "gfp_t")
        .constant("ARCH_KMALLOC_MINALIGN", "size_t")
        .constant("EPOLLIN", "__poll_t")
        .constant("EPOLLPRI", "__poll_t")
        .constant("EPOLLOUT", "__poll_t")
        .constant("EPOLLERR", "__poll_t")
        .constant("EPOLLHUP", "__poll_t")
        .constant("EPOLLRDNORM", "__poll_t")
        .constant("EPOLLWRNORM", "__poll_t")
        // ioctl numbers' layout is per architecture.
        .constant("_IOC_NONE", "unsigned int")
        .constant("_IOC_READ", "unsigned int")
        .constant("_IOC_WRITE", "unsigned int")
        .constant("_IOC_SIZEBITS", "unsigned int")
        .constant("_IOC_DIRSHIFT", "unsigned int")
        .constant("_IOC_TYPESHIFT", "unsigned int")
        .constant("_IOC_NRSHIFT", "unsigned int")
        .constant("_IOC_SIZESHIFT", "unsigned int")
        .helper(
            "unsigned long kmod_copy_to_user(void __user *to, const void *from, unsigned long n)",
            "return copy_to_user(to, from, n);",
        )
        .helper(
            "unsigned long kmod_copy_from_user(void *to, const void __user *from, unsigned long n)",
            "return copy_from_user(to, from, n);",
        )
        // The key is the Rust construction site's (`new_spinlock!`); only
        // lockdep kernels (DEBUG_SPINLOCK) take one, as C's macro does.
        .helper(
            "void kmod_spin_lock_init(spinlock_t *lock, const char *name, struct lock_class_key *key)",
            "#if defined(CONFIG_DEBUG_SPINLOCK) && !defined(CONFIG_PREEMPT_RT)\n\
             \t__raw_spin_lock_init(spinlock_check(lock), name, key, LD_WAIT_CONFIG);\n\
             #else\n\
             \t(void)name;\n\t(void)key;\n\tspin_lock_init(lock);\n\
             #endif",
        )
        .helper(
            "unsigned long kmod_spin_lock_irqsave(spinlock_t *lock)",
            "unsigned long flags;\n\tspin_lock_irqsave(lock, flags);\n\treturn flags;",
        )
        .helper(
            "void kmod_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)",
            "spin_unlock_irqrestore(lock, flags);",
        )
        .helper(
            "void kmod_mutex_init(struct mutex *lock, const char *name, struct lock_class_key *key)",
            "__mutex_init(lock, name, key);",
        )
        .helper("void kmod_mutex_lock(struct mutex *lock)", "mutex_lock(lock);")
        .helper(
            "void kmod_timer_setup(struct timer_list *timer, void (*callback)(struct timer_list *))",
            "timer_setup(timer, callback, 0);",
        )
        .helper(
            "unsigned long kmod_msecs_to_jiffies(unsigned int ms)",
            "return msecs_to_jiffies(ms);",
        )
        .helper(
            "void kmod_prepare_to_wait_interruptible(struct wait_queue_head *queue, struct wait_queue_entry *entry)",
            "prepare_to_wait(queue, entry, TASK_INTERRUPTIBLE);",
        )
        .helper(
            "void kmod_wake_up_interruptible_all(struct wait_queue_head *queue)",
            "wake_up_interruptible_all(queue);",
        )
        .helper("bool kmod_signal_pending(void)", "return signal_pending(current);")
        .helper(
            "void kmod_poll_wait(struct file *file, struct wait_queue_head *queue, poll_table *table)",
            "poll_wait(file, queue, table);",
        )
        // The key is the Rust construction site's (`new_work!`), which
        // lockdep kernels use for the work's map, as C's INIT_WORK does.
        .helper(
            "void kmod_init_work(struct work_struct *work, work_func_t func, struct lock_class_key *key)",
            "__INIT_WORK_KEY(work, func, 0, key);\n\t(void)key;",
        )
        .helper(
            "bool kmod_queue_work(struct work_struct *work)",
            "return queue_work(system_wq, work);",
        )
        // As C's init_completion, with the call site's key (`new_completion!`).
        .helper(
            "void kmod_init_completion(struct completion *done, const char *name, struct lock_class_key *key)",
            "done->done = 0;\n\t__init_swait_queue_head(&done->wait, name, key);",
        )
        .helper("void __noreturn kmod_bug(void)", "BUG();")
        .helper(
            "void *kmod_kthread_run(int (*run)(void *), void *data, const char *name)",
            "return kthread_run(run, data, \"%s\", name);",
        )
        .helper("void *kmod_current(void)", "return current;")
        // Every atomic context safe code can enter (irqsave spinlocks,
        // softirq, hardirq) shows here, PREEMPT_COUNT or not.
        .helper(
            "bool kmod_may_sleep(void)",
            "return !in_atomic() && !irqs_disabled();",
        )
        .helper(
            "unsigned long kmod_local_irq_save(void)",
            "unsigned long flags;\n\tlocal_irq_save(flags);\n\treturn flags;",
        )
        .helper(
            "void kmod_local_irq_restore(unsigned long flags)",
            "local_irq_restore(flags);",
        )
        // Array parameters and sysfs attribute groups (`param.rs`, `sysfs.rs`).
        .header("linux/kobject.h")
        .header("linux/sysfs.h")
        .allow_function("kobject_create_and_add|kobject_put|sysfs_create_group|sysfs_remove_group")
        .allow_type("kparam_array|kobj_attribute|attribute_group")
        .allow_var("param_array_ops|kernel_kobj")
        .constant("PAGE_SIZE", "unsigned long")
        .helper(
            "void kmod_sysfs_attr_init(struct attribute *attr)",
            "sysfs_attr_init(attr);\n\t(void)attr;",
        )
        .build();
}
