//! Running the tree's `make`: paths Kbuild can use, a stable locale, and
//! errors that carry the command and everything it printed.

use std::process::{Command, Output};

use camino::Utf8Path;

use crate::error::{Error, Result};

/// Kbuild splits `M=` on spaces and colons.
pub fn check_kbuild_path(dir: &Utf8Path) -> Result<()> {
    if dir.as_str().contains([' ', ':']) {
        return Err(Error::Prerequisite {
            what: format!("a build directory Kbuild can use ({dir} contains a space or colon)"),
            help: "move the project (or CARGO_TARGET_DIR) to a path without spaces or colons"
                .into(),
        });
    }
    Ok(())
}

/// Runs `command` with a stable locale; returns its stdout and stderr, or an
/// error holding both.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    command.env("LC_ALL", "C");
    let shown = shown(command);
    let output = command.output().map_err(|e| Error::Command {
        command: shown.clone(),
        status: String::new(),
        output: e.to_string(),
    })?;
    command_output(&shown, output)
}

pub(crate) fn shown(command: &Command) -> String {
    format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Stdout then stderr, or an error holding both if the command failed.
pub(crate) fn command_output(shown: &str, output: Output) -> Result<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(Error::Command {
            command: shown.to_owned(),
            status: format!(" ({})", output.status),
            output: text,
        })
    }
}
