//! `cargo xtask fetch RELEASE...`: download and unpack kernels this machine
//! does not have installed (Debian's packages, no root needed), or `--list`
//! what the archive offers.

use anyhow::{bail, Result};
use kmod_build::fetch;

use crate::status;

#[derive(clap::Args)]
pub struct Args {
    /// Releases to fetch, as `uname -r` names them (e.g. `6.1.0-57-cloud-amd64`).
    releases: Vec<String>,
    /// List the releases and flavours the archive offers instead.
    #[arg(long, conflicts_with = "releases")]
    list: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if args.list {
        return list();
    }
    if args.releases.is_empty() {
        bail!("name the releases to fetch (`cargo xtask fetch --list` shows them)");
    }
    for release in &args.releases {
        let started = std::time::Instant::now();
        status::step("Fetching", release);
        let fetched = fetch::fetch(release)?;
        let how = if fetched.reused {
            "already fetched".to_owned()
        } else {
            format!("in {:.1}s", started.elapsed().as_secs_f64())
        };
        status::step(
            "Fetched",
            &format!(
                "{release} ({}, {how}): tree {}, image {}",
                fetched.tree.arch, fetched.tree.path, fetched.image
            ),
        );
        for problem in &fetched.machine_problems {
            status::step("Warning", &format!("{release}: {problem}"));
        }
    }
    Ok(())
}

/// One line per release: its version, flavour and whether it is here.
fn list() -> Result<()> {
    let offered = fetch::offered()?;
    let here = kmod_build::KernelTree::available();
    for release in &offered {
        let origin = here
            .iter()
            .find(|tree| &tree.release == release)
            .map_or("", |tree| tree.origin().name());
        println!("{release:32} {:12} {origin}", fetch::flavour(release));
    }
    Ok(())
}
