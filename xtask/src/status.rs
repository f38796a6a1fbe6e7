//! Cargo-style status lines on stderr.

use std::io::IsTerminal;

fn paint(code: &str, text: &str) -> String {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `   Compiling hello (6.1.0-56-amd64)`: the verb right-aligned, like cargo.
pub fn step(verb: &str, message: &str) {
    eprintln!("{} {message}", paint("1;32", &format!("{verb:>12}")));
}

pub fn error(message: &str) {
    eprintln!("{}: {message}", paint("1;31", "error"));
}

pub fn warning(message: &str) {
    eprintln!("{}: {message}", paint("1;33", "warning"));
}
