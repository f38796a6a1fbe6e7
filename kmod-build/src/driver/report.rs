//! Everything the driver has to say goes through one [`Reporter`], so a
//! front end decides how it looks: cargo-style status lines on a terminal
//! ([`Human`]), or one JSON object per line for tools ([`Json`]).

use std::io::{IsTerminal, Write};

/// One thing worth telling the user, as it happens.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step of the build: `   Compiling hello (6.1.0-57-amd64)`.
    Status { verb: &'a str, message: &'a str },
    /// Something the user should act on that does not stop the build.
    Warning { message: &'a str },
    /// A checked `.ko` is at its output path.
    Artifact(&'a Artifact),
    /// One line of cargo's own JSON output.
    Cargo(&'a str),
}

/// A finished module: built and checked, or found up to date.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub module: String,
    pub release: String,
    pub path: camino::Utf8PathBuf,
    /// Nothing had changed since the last build: no cargo, no make.
    pub fresh: bool,
}

/// Where the driver's events go. It is shared by the builds of several
/// kernels running in parallel, hence `Sync`.
pub trait Reporter: Sync {
    fn report(&self, event: Event<'_>);

    /// The `--message-format` cargo is run with: the human reporter lets
    /// cargo render its diagnostics, the JSON one passes them through.
    fn cargo_message_format(&self) -> &'static str {
        "json-render-diagnostics"
    }

    fn status(&self, verb: &str, message: &str) {
        self.report(Event::Status { verb, message });
    }

    fn warning(&self, message: &str) {
        self.report(Event::Warning { message });
    }
}

/// Cargo's look: a right-aligned green verb on stderr, colour only on a
/// terminal and without `NO_COLOR`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Human;

fn paint(code: &str, text: &str) -> String {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

impl Human {
    /// `error: ...` as cargo prints it.
    pub fn error(&self, message: &str) {
        eprintln!("{}: {message}", paint("1;31", "error"));
    }
}

impl Reporter for Human {
    fn report(&self, event: Event<'_>) {
        match event {
            Event::Status { verb, message } => {
                eprintln!("{} {message}", paint("1;32", &format!("{verb:>12}")));
            }
            Event::Warning { message } => {
                eprintln!("{}: {message}", paint("1;33", "warning"));
            }
            Event::Artifact(artifact) if artifact.fresh => {
                self.status("Fresh", &format!("{} (nothing changed)", artifact.path));
            }
            Event::Artifact(artifact) => self.status("Built", artifact.path.as_str()),
            // Cargo rendered its diagnostics on stderr already.
            Event::Cargo(_) => {}
        }
    }
}

/// One JSON object per line on stdout, each with a `reason` as cargo's
/// own messages have; cargo's messages are passed through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Json;

impl Json {
    /// The line an event prints as, if it prints one.
    fn line(event: Event<'_>) -> String {
        match event {
            Event::Status { verb, message } => serde_json::json!({
                "reason": "kmod-status", "verb": verb, "message": message,
            })
            .to_string(),
            Event::Warning { message } => serde_json::json!({
                "reason": "kmod-warning", "message": message,
            })
            .to_string(),
            Event::Artifact(artifact) => {
                let mut value = serde_json::to_value(artifact).unwrap_or_default();
                value["reason"] = "kmod-artifact".into();
                value.to_string()
            }
            Event::Cargo(line) => line.to_owned(),
        }
    }
}

impl Reporter for Json {
    fn report(&self, event: Event<'_>) {
        // One write per line: lines of parallel builds never interleave.
        let line = Json::line(event) + "\n";
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    fn cargo_message_format(&self) -> &'static str {
        "json"
    }
}

/// The JSON form of a finished step with an error, for front ends.
pub fn error_json(message: &str, exit_code: i32) -> String {
    serde_json::json!({ "reason": "kmod-error", "message": message, "exit_code": exit_code })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_a_reason_and_cargo_lines_pass_through() {
        let artifact = Artifact {
            module: "hello".into(),
            release: "6.1.0-1-amd64".into(),
            path: "/p/target/kmod/6.1.0-1-amd64/hello.ko".into(),
            fresh: false,
        };
        let parsed: serde_json::Value =
            serde_json::from_str(&Json::line(Event::Artifact(&artifact))).unwrap();
        assert_eq!(parsed["reason"], "kmod-artifact");
        assert_eq!(parsed["release"], "6.1.0-1-amd64");
        assert_eq!(parsed["path"], "/p/target/kmod/6.1.0-1-amd64/hello.ko");
        assert_eq!(parsed["fresh"], false);
        let status: serde_json::Value = serde_json::from_str(&Json::line(Event::Status {
            verb: "Compiling",
            message: "hello (6.1.0-1-amd64)",
        }))
        .unwrap();
        assert_eq!(status["reason"], "kmod-status");
        assert_eq!(status["verb"], "Compiling");
        let cargo = r#"{"reason":"compiler-artifact","x":1}"#;
        assert_eq!(Json::line(Event::Cargo(cargo)), cargo);
    }
}
