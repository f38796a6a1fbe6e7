//! The runtime's bindings and C shim for the tree `cargo kmod build` names
//! in `KMOD_BUILD_KERNEL`, as bindings.toml lists them. `cargo kmod`
//! overrides this script (the manifest's `links` and
//! `package.metadata.kmod-build`): it runs only in builds without it.
fn main() {
    println!("cargo:rerun-if-changed=bindings.toml");
    match kmod_build::Build::from_spec("bindings.toml") {
        Ok(build) => build.build(),
        Err(error) => {
            println!("cargo::error={error}");
            std::process::exit(1);
        }
    }
}
