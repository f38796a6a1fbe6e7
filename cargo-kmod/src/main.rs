//! `cargo kmod`: every command is kmod-build's, this is only its name.
fn main() -> std::process::ExitCode {
    kmod_build::cli::cargo_kmod_main()
}
