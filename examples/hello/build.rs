fn main() {
    kmod_build::Module::new("hello")
        .header("linux/printk.h")
        .header("linux/panic.h")
        .header("linux/version.h")
        .allow_function("_printk")
        .allow_function("panic")
        .allow_var("KERN_.*")
        .allow_var("LINUX_VERSION_CODE")
        .build();
}
