//! `cargo kmod doctor`: whether a tree can build and link a module, and
//! for each missing or broken piece what provides it.

use super::Global;
use crate::driver::select;
use crate::error::Result;
use crate::{doctor, KernelTree};

#[derive(clap::Args)]
pub struct Args {
    /// Kernel release or tree path to check; repeat for several.
    /// Default: the trees `build` would pick.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    kernels: Vec<String>,
}

impl Args {
    /// Prints each tree's problems on stdout; fails (exit code 3) unless
    /// every tree is usable.
    pub fn run(self, global: &Global) -> Result<()> {
        let reporter = global.reporter();
        let mut first_broken: Option<(KernelTree, doctor::Diagnosis)> = None;
        for tree in select::trees(&self.kernels, reporter)? {
            reporter.status(
                "Checking",
                &format!("{} ({}, {} layout)", tree.release, tree.path, tree.layout),
            );
            let diagnosis = doctor::diagnose(&tree);
            if diagnosis.is_usable() {
                println!("{}: usable", tree.release);
                continue;
            }
            println!("{}: not usable", tree.release);
            for problem in &diagnosis.problems {
                println!("  {problem}");
            }
            first_broken.get_or_insert((tree, diagnosis));
        }
        match first_broken {
            Some((tree, diagnosis)) => diagnosis.into_result(&tree),
            None => Ok(()),
        }
    }
}
