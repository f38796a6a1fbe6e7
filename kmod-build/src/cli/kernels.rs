//! `cargo kmod kernels`: every kernel-devel tree on this machine (installed or
//! fetched), one line each, or JSON.

use super::Global;
use crate::error::{Error, Result};
use crate::mitigations::Mitigations;
use crate::tree::no_tree_error;
use crate::{doctor, KernelTree};

#[derive(clap::Args)]
pub struct Args {
    /// One JSON object per tree (release, path, arch, image, origin).
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn run(self, _global: &Global) -> Result<()> {
        run(&self)
    }
}

fn run(args: &Args) -> Result<()> {
    let trees = KernelTree::available();
    if trees.is_empty() {
        return Err(no_tree_error());
    }
    if args.json {
        let list: Vec<serde_json::Value> = trees
            .iter()
            .map(|tree| {
                let image = tree.image();
                serde_json::json!({
                    "release": tree.release,
                    "path": tree.path,
                    "arch": tree.arch,
                    "image": image.is_file().then_some(image),
                    "origin": tree.origin().name(),
                })
            })
            .collect();
        let json = serde_json::to_string_pretty(&list).map_err(|e| Error::Internal {
            what: format!("serializing the trees: {e}"),
        })?;
        println!("{json}");
        return Ok(());
    }
    let header = [
        "RELEASE",
        "ORIGIN",
        "PATH",
        "LAYOUT",
        "COMPILER",
        "MODVERSIONS",
        "MITIGATIONS",
        "USABLE",
    ];
    let rows: Vec<[String; 8]> = trees.iter().map(row).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].len())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let print = |cells: &[&str]| {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(&header);
    for row in &rows {
        print(&row.each_ref().map(String::as_str));
    }
    Ok(())
}

fn row(tree: &KernelTree) -> [String; 8] {
    let config = tree.config().ok();
    let yes_no = |yes: bool| if yes { "yes" } else { "no" }.to_owned();
    let modversions = config
        .as_ref()
        .map_or("?".to_owned(), |c| yes_no(c.is_y("CONFIG_MODVERSIONS")));
    let mitigations = config.as_ref().map_or("?".to_owned(), |c| {
        // arm64's hardening is branch protection, not x86's thunks.
        if c.is_y("CONFIG_ARM64") {
            let on: Vec<&str> = [
                ("CONFIG_ARM64_BTI_KERNEL", "bti"),
                ("CONFIG_ARM64_PTR_AUTH_KERNEL", "pac"),
            ]
            .iter()
            .filter(|(option, _)| c.is_y(option))
            .map(|(_, name)| *name)
            .collect();
            return if on.is_empty() {
                "none".to_owned()
            } else {
                on.join(",")
            };
        }
        let Mitigations {
            retpoline,
            rethunk,
            ibt,
        } = Mitigations::from_config(c);
        let on: Vec<&str> = [(retpoline, "retpoline"), (rethunk, "rethunk"), (ibt, "ibt")]
            .iter()
            .filter(|(enabled, _)| *enabled)
            .map(|(_, name)| *name)
            .collect();
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(",")
        }
    });
    let compiler = tree.compiler();
    let compiler = if compiler.is_clang {
        format!("{} (LLVM=1)", compiler.command)
    } else {
        compiler.command
    };
    let diagnosis = doctor::diagnose(tree);
    let usable = if diagnosis.is_usable() {
        "yes".to_owned()
    } else {
        format!(
            "no ({} problems: cargo kmod doctor)",
            diagnosis.problems.len()
        )
    };
    [
        tree.release.clone(),
        tree.origin().to_string(),
        tree.path.to_string(),
        tree.layout.to_string(),
        compiler,
        modversions,
        mitigations,
        usable,
    ]
}
