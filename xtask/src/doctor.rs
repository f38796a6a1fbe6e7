//! `cargo xtask doctor`: whether a tree can build and link a module, and
//! for each missing or broken piece what provides it.

use anyhow::Result;
use kmod_build::{doctor, KernelTree};

use crate::{build_module, status};

#[derive(clap::Args)]
pub struct Args {
    /// Kernel release or tree path to check; repeat for several.
    /// Default: the trees `build-module` would pick.
    #[arg(long = "kernel", value_name = "RELEASE|PATH")]
    pub kernels: Vec<String>,
}

/// Prints each tree's problems on stdout; fails (exit code 3) unless every
/// tree is usable.
pub fn run(args: &Args) -> Result<()> {
    let trees = build_module::select_trees(&args.kernels)?;
    let mut first_broken: Option<(KernelTree, doctor::Diagnosis)> = None;
    for tree in trees {
        status::step(
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
        Some((tree, diagnosis)) => Ok(diagnosis.into_result(&tree)?),
        None => Ok(()),
    }
}
