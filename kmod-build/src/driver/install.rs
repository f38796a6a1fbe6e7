//! Built, checked modules put where `modprobe` finds them:
//! `<root>/lib/modules/<release>/updates/<module>.ko`, then `depmod`, and
//! `modprobe` when asked and the release is the running kernel's.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use super::build::{build, BuildOptions};
use super::project::{ModuleCrate, Project};
use super::report::{Event, Reporter};
use super::{run_status, select};
use crate::error::{Error, Result};
use crate::files::{collect_leftovers, PARTIAL_SUFFIX};

/// The files depmod reads besides the modules themselves: without them it
/// warns, and modprobe in a staging root knows nothing of built-in modules.
const RELEASE_FILES: [&str; 3] = [
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// What `install` is asked for.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Which kernels, signing, features: as for `cargo kmod build`.
    pub build: BuildOptions,
    /// A staging directory to install under instead of `/`.
    pub root: Option<Utf8PathBuf>,
    /// `modprobe` the module afterwards (the running kernel only).
    pub load: bool,
    /// The command line to run as root, for the error that asks for it.
    pub command: String,
}

/// One module in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub release: String,
    pub path: Utf8PathBuf,
    /// `modprobe` loaded it.
    pub loaded: bool,
}

/// What can be refused before anything is built: `--load` for kernels
/// that are not running, or writing to the system's `/lib/modules` or
/// loading a module without root.
pub fn preflight(options: &InstallOptions) -> Result<()> {
    if options.load {
        let running = running_release()?;
        let releases = releases(&options.build)?;
        if !releases.contains(&running) {
            return Err(Error::NotRunning {
                releases: releases.join(", "),
                running,
            });
        }
    }
    let root_for = if options.load {
        Some("loading a module (--load)")
    } else if options.root.is_none() {
        Some("installing into /lib/modules without --root DIR")
    } else {
        None
    };
    if let Some(what) = root_for {
        if !rustix::process::geteuid().is_root() {
            return Err(Error::NeedsRoot {
                what: what.to_owned(),
                command: options.command.clone(),
            });
        }
    }
    Ok(())
}

/// Builds `module` as [`build`] does, installs each checked `.ko` under
/// `<root>/lib/modules/<release>/updates/` (atomically), runs
/// `depmod -a [-b root] <release>`, and with `load` runs `modprobe` for the
/// running kernel's release.
pub fn install(
    project: &Project,
    module: &ModuleCrate,
    options: &InstallOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<Installed>> {
    preflight(options)?;
    let depmod = tool("depmod")?;
    let modprobe = if options.load {
        Some(tool("modprobe")?)
    } else {
        None
    };
    let artifacts = build(project, module, &options.build, reporter)?;
    // depmod -b and modprobe -d name files by what they are given.
    let root = match &options.root {
        Some(root) => Some(absolute(root)?),
        None => None,
    };
    let running = running_release().ok();
    let mut installed = Vec::new();
    for artifact in artifacts {
        let release = &artifact.release;
        let dir = root
            .as_deref()
            .unwrap_or(Utf8Path::new("/"))
            .join("lib/modules")
            .join(release);
        let file_name = artifact.path.file_name().ok_or_else(|| Error::Internal {
            what: format!("{}: a built module without a file name", artifact.path),
        })?;
        let target = dir.join("updates").join(file_name);
        reporter.status(
            "Installing",
            &format!("{file_name} ({release}) to {target}"),
        );
        copy_atomically(&artifact.path, &target)?;
        if root.is_some() {
            stage_release_files(release, &dir, reporter)?;
        }
        let mut command = Command::new(&depmod);
        command.arg("-a");
        if let Some(root) = &root {
            command.arg("-b").arg(root);
        }
        command.arg(release);
        run_status(&mut command, &format!("{depmod} -a {release}"))?;
        let mut loaded = false;
        if let Some(modprobe) = &modprobe {
            if running.as_deref() == Some(release.as_str()) {
                let name = artifact.path.file_stem().unwrap_or(file_name);
                let mut command = Command::new(modprobe);
                if let Some(root) = &root {
                    command.arg("-d").arg(root);
                }
                // modprobe keeps a loaded copy: the one just built replaces it.
                let loaded_name = name.replace('-', "_");
                if Utf8Path::new("/sys/module").join(&loaded_name).exists() {
                    reporter.status("Unloading", &format!("{loaded_name} (loaded before)"));
                    let mut remove = Command::new(modprobe);
                    remove.arg("-r").arg(&loaded_name);
                    run_status(&mut remove, &format!("{modprobe} -r {loaded_name}"))?;
                }
                reporter.status("Loading", &format!("{name} ({release})"));
                command.arg(name);
                run_status(&mut command, &format!("{modprobe} {name}"))?;
                loaded = true;
            }
        }
        installed.push(Installed {
            release: release.clone(),
            path: target,
            loaded,
        });
    }
    Ok(installed)
}

/// The releases `options` would build for, found without a word (the
/// build itself says which it selected).
fn releases(options: &BuildOptions) -> Result<Vec<String>> {
    struct Quiet;
    impl Reporter for Quiet {
        fn report(&self, _: Event<'_>) {}
    }
    let trees = if options.all_kernels {
        select::every_installed_and(&options.kernels)?
    } else {
        select::trees(&options.kernels, &Quiet)?
    };
    Ok(trees.into_iter().map(|tree| tree.release).collect())
}

fn absolute(path: &Utf8Path) -> Result<Utf8PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    Utf8PathBuf::from_path_buf(absolute).map_err(|path| Error::NonUtf8Path { path })
}

fn running_release() -> Result<String> {
    const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
    std::fs::read_to_string(OSRELEASE)
        .map(|release| release.trim().to_owned())
        .map_err(|e| Error::io(OSRELEASE, e))
}

/// `name` on `PATH`, else in the sbin directories a user's `PATH` often
/// lacks.
fn tool(name: &str) -> Result<Utf8PathBuf> {
    let found = which::which(name).ok().or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|dir| std::path::Path::new(dir).join(name))
            .find(|path| path.is_file())
    });
    match found.map(Utf8PathBuf::from_path_buf) {
        Some(Ok(path)) => Ok(path),
        Some(Err(path)) => Err(Error::NonUtf8Path { path }),
        None => Err(Error::Prerequisite {
            what: name.to_owned(),
            help: "apt-get install kmod".to_owned(),
        }),
    }
}

/// Copies `from` to `to` through a temporary file beside `to`, renamed
/// over it once complete and on disk: modprobe never sees half a module.
fn copy_atomically(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Utf8Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = format!(".{}.", to.file_name().unwrap_or("module"));
    collect_leftovers(dir, &prefix, false);
    let bytes = std::fs::read(from).map_err(|e| Error::io(from, e))?;
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(PARTIAL_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    // Modules are world-readable (modinfo runs as any user); tempfile makes 0600.
    let written = file
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(&bytes))
        .and_then(|()| file.as_file().sync_all());
    written.map_err(|e| Error::io(to, e))?;
    file.persist(to).map_err(|e| Error::io(to, e.error))?;
    Ok(())
}

/// Copies the release's own `modules.order`/`modules.builtin*` into a
/// staging root that lacks them, from the installed kernel's
/// `/lib/modules/<release>`; says so when that has none either (depmod
/// then warns, and built-in modules are unknown to a staged modprobe).
fn stage_release_files(release: &str, dir: &Utf8Path, reporter: &dyn Reporter) -> Result<()> {
    // A fetched kernel's directory is laid out like `/`.
    let fetched = crate::tree::kernels_dir().join(release);
    let sources: Vec<Utf8PathBuf> = [Utf8Path::new("/"), &fetched]
        .iter()
        .flat_map(|root| ["lib/modules", "usr/lib/modules"].map(|dir| root.join(dir)))
        .map(|base| base.join(release))
        .collect();
    for name in RELEASE_FILES {
        let staged = dir.join(name);
        if staged.exists() {
            continue;
        }
        match sources.iter().map(|s| s.join(name)).find(|s| s.is_file()) {
            Some(source) => copy_atomically(&source, &staged)?,
            None => reporter.warning(&format!(
                "{release}: no {name} in /lib/modules/{release} to copy into {dir}"
            )),
        }
    }
    Ok(())
}
