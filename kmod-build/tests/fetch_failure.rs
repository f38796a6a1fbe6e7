//! A fetch that fails half-way (here: unpacking, with a `dpkg-deb` that
//! fails) leaves nothing in the cache that looks usable, and no debris.
//! Its own test binary: it changes the process's PATH and cache home.

use camino::Utf8PathBuf;
use kmod_build::fetch;

#[test]
fn failed_unpack_leaves_nothing_usable() {
    let cache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("dpkg-deb");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'dpkg-deb: broken on purpose' >&2\nexit 2\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let release = fetch::offered()
        .expect("apt-cache search")
        .into_iter()
        .rev()
        .find(|release| fetch::flavour(release).starts_with("cloud-"))
        .expect("the archive offers a cloud kernel");
    // This binary has no other test: nothing else reads the environment.
    std::env::set_var(kmod_build::CACHE_HOME_ENV, cache.path());
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", bin.path().display()));
    let error = fetch::fetch(&release).unwrap_err().to_string();
    assert!(error.contains("dpkg-deb"), "{error}");
    let kernels = Utf8PathBuf::try_from(cache.path().join("kernels")).unwrap();
    let left: Vec<String> = kernels
        .read_dir_utf8()
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {kernels}: {left:?}");
    assert!(fetch::fetched_trees().is_empty());
}
