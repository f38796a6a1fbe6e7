//! `cargo xtask build-module {name}` and the rest of `cargo kmod`'s
//! commands, for machines without `cargo kmod` installed.
fn main() -> std::process::ExitCode {
    kmod_build::cli::xtask_main()
}
