//! `cargo kmod new`: a complete project around one module crate, that
//! builds as it is written.

use camino::{Utf8Path, Utf8PathBuf};

use super::report::Reporter;
use crate::error::{Error, Result};

/// The toolchain kmod-build is tested with: what new projects pin.
pub const TOOLCHAIN: &str = "1.95.0";

/// The Rust targets of the kernel architectures the driver builds for.
pub const TARGETS: &[&str] = &["x86_64-unknown-none", "aarch64-unknown-none-softfloat"];

/// What `new` writes.
#[derive(Debug, Clone)]
pub struct NewOptions {
    /// The project directory; its basename names the module crate.
    pub dir: Utf8PathBuf,
    /// A kmod-build checkout to depend on by path, instead of the registry.
    pub local: Option<Utf8PathBuf>,
    /// The kernel (release or tree path) the editor settings check the
    /// module against; `None`: whichever tree each check selects.
    pub kernel: Option<String>,
}

/// Writes the project into `options.dir` (which must not exist, or be
/// empty) all at once: a temporary directory renamed into place.
pub fn new_project(options: &NewOptions, reporter: &dyn Reporter) -> Result<Utf8PathBuf> {
    let dir = &options.dir;
    let name = dir
        .file_name()
        .ok_or_else(|| Error::BadInput {
            path: dir.clone(),
            why: "has no name to give the module".into(),
        })?
        .to_owned();
    check_name(dir, &name)?;
    if dir.exists()
        && dir
            .read_dir_utf8()
            .map_or(true, |mut entries| entries.next().is_some())
    {
        return Err(Error::BadInput {
            path: dir.clone(),
            why: "already exists and is not an empty directory".into(),
        });
    }
    let (runtime, driver) = match &options.local {
        Some(checkout) => {
            let checkout = checkout
                .canonicalize_utf8()
                .map_err(|e| Error::io(checkout, e))?;
            for crate_dir in ["kmod-runtime", "kmod-build"] {
                let manifest = checkout.join(crate_dir).join("Cargo.toml");
                if !manifest.is_file() {
                    return Err(Error::BadInput {
                        path: checkout.clone(),
                        why: format!("is not a kmod-build checkout: no {manifest}"),
                    });
                }
            }
            (
                format!("{{ path = {:?} }}", checkout.join("kmod-runtime").as_str()),
                format!(
                    "{{ path = {:?}, features = [\"cli\"] }}",
                    checkout.join("kmod-build").as_str()
                ),
            )
        }
        None => {
            let version = env!("CARGO_PKG_VERSION");
            (
                format!("{version:?}"),
                format!("{{ version = {version:?}, features = [\"cli\"] }}"),
            )
        }
    };
    let module = name.replace('-', "_");
    let camel: String = module
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{name}", &name)
            .replace("{module}", &module)
            .replace("{camel}", &camel)
            .replace("{runtime}", &runtime)
            .replace("{driver}", &driver)
    };
    let toolchain = format!(
        "[toolchain]\nchannel = \"{TOOLCHAIN}\"\ncomponents = [\"rust-src\", \"rustfmt\", \"clippy\"]\n\
         targets = [{}]\nprofile = \"minimal\"\n",
        TARGETS
            .iter()
            .map(|target| format!("{target:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut files: Vec<(String, String)> = vec![
        (
            "Cargo.toml".into(),
            fill(include_str!("../../templates/workspace.toml")),
        ),
        (
            format!("{name}/Cargo.toml"),
            fill(include_str!("../../templates/module.toml")),
        ),
        (
            format!("{name}/src/lib.rs"),
            fill(include_str!("../../templates/module.rs")),
        ),
        (
            "xtask/Cargo.toml".into(),
            fill(include_str!("../../templates/xtask.toml")),
        ),
        (
            "xtask/src/main.rs".into(),
            fill(include_str!("../../templates/xtask.rs")),
        ),
        (
            ".cargo/config.toml".into(),
            fill(include_str!("../../templates/cargo-config.toml")),
        ),
        (
            ".gitignore".into(),
            fill(include_str!("../../templates/gitignore")),
        ),
        (
            "README.md".into(),
            fill(include_str!("../../templates/README.md")),
        ),
        ("rust-toolchain.toml".into(), toolchain),
    ];
    // The editor sees the module as built for the kernel named, else for
    // this machine's architecture.
    let target = match &options.kernel {
        Some(kernel) => crate::KernelTree::select(kernel)?.rust_target(),
        None => crate::tree::arch_targets(crate::tree::host_arch()).map_or(TARGETS[0], |t| t.0),
    };
    files.extend(
        super::editor::settings(target, options.kernel.as_deref())
            .into_iter()
            .map(|(file, text)| (file.to_owned(), text)),
    );

    let parent = match dir.parent() {
        Some(parent) if !parent.as_str().is_empty() => parent.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    for (relative, text) in &files {
        let path = partial.path().join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(relative.as_str(), e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io(relative.as_str(), e))?;
    }
    // rename(2) replaces an empty directory.
    let partial = partial.keep();
    if let Err(e) = std::fs::rename(&partial, dir) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(Error::io(dir, e));
    }
    reporter.status("Created", &format!("module crate `{name}` in {dir}"));
    Ok(dir.clone())
}

/// A name that is a crate name and, with `-` as `_`, a kernel module name.
fn check_name(dir: &Utf8Path, name: &str) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 55;
    if valid {
        return Ok(());
    }
    Err(Error::BadInput {
        path: dir.to_owned(),
        why: format!(
            "`{name}` cannot name a module: use lower-case letters, digits, `_` and `-`, \
             starting with a letter, at most 55 characters"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_cargo_and_the_kernel() {
        let dir = Utf8Path::new("/tmp/x");
        assert!(check_name(dir, "my_driver").is_ok());
        assert!(check_name(dir, "my-driver2").is_ok());
        for bad in ["MyDriver", "2fast", "has space", "dot.ted", ""] {
            assert!(check_name(dir, bad).is_err(), "{bad:?}");
        }
        assert!(check_name(dir, &"a".repeat(56)).is_err());
    }

    #[test]
    fn the_pinned_toolchain_is_this_repository_s() {
        // New projects pin what this checkout tests with.
        let pin = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../rust-toolchain.toml");
        let Ok(text) = std::fs::read_to_string(&pin) else {
            return; // Packaged on its own: nothing to compare with.
        };
        assert!(
            text.contains(&format!("channel = \"{TOOLCHAIN}\"")),
            "{pin} pins another channel than {TOOLCHAIN}"
        );
    }
}
