//! `cargo kmod fetch RELEASE...`: download and unpack kernels this machine
//! does not have installed (Debian's packages, no root needed), or `--list`
//! what the archive offers.

use super::Global;
use crate::error::{Error, Result};
use crate::fetch;

#[derive(clap::Args)]
pub struct Args {
    /// Releases to fetch, as `uname -r` names them (e.g. `6.1.0-57-cloud-amd64`).
    releases: Vec<String>,
    /// List the releases and flavours the archive offers instead.
    #[arg(long, conflicts_with = "releases")]
    list: bool,
}

impl Args {
    pub fn run(self, global: &Global) -> Result<()> {
        if self.list {
            return list();
        }
        if self.releases.is_empty() {
            return Err(Error::BadInput {
                path: "fetch".into(),
                why: "name the releases to fetch (`cargo kmod fetch --list` shows them)".into(),
            });
        }
        let reporter = global.reporter();
        for release in &self.releases {
            let started = std::time::Instant::now();
            reporter.status("Fetching", release);
            let fetched = fetch::fetch(release)?;
            let how = if fetched.reused {
                "already fetched".to_owned()
            } else {
                format!("in {:.1}s", started.elapsed().as_secs_f64())
            };
            reporter.status(
                "Fetched",
                &format!(
                    "{release} ({}, {how}): tree {}, image {}",
                    fetched.tree.arch, fetched.tree.path, fetched.image
                ),
            );
            for problem in &fetched.machine_problems {
                reporter.warning(&format!("{release}: {problem}"));
            }
        }
        Ok(())
    }
}

/// One line per release: its version, flavour and whether it is here.
fn list() -> Result<()> {
    let offered = fetch::offered()?;
    let here = crate::KernelTree::available();
    for release in &offered {
        let origin = here
            .iter()
            .find(|tree| &tree.release == release)
            .map_or("", |tree| tree.origin().name());
        println!("{release:32} {:12} {origin}", fetch::flavour(release));
    }
    Ok(())
}
