use camino::Utf8PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each naming the file, symbol or tool at
/// fault and, where there is one, the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no kernel-devel tree found (looked in {searched}); install one: {install}")]
    NoKernelTree { searched: String, install: String },

    #[error("--kernel {spec}: matches no installed kernel-devel tree (installed: {installed})")]
    NoSuchKernel { spec: String, installed: String },

    #[error("{path}: not a kernel-devel tree: {why}")]
    NotATree { path: Utf8PathBuf, why: String },

    #[error("{path}: missing from the kernel-devel tree; {help}")]
    MissingFile { path: Utf8PathBuf, help: String },

    #[error("{tree} cannot build modules: {problem}{}", more_problems(*.more))]
    BrokenTree {
        tree: Utf8PathBuf,
        problem: String,
        /// How many further problems `cargo kmod doctor` would list.
        more: usize,
    },

    #[error("{path}:{line}: {why}")]
    Parse {
        path: Utf8PathBuf,
        line: usize,
        why: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        source: std::io::Error,
    },

    #[error("`{command}` failed{status}\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("{what} is missing; fix: {help}")]
    Prerequisite { what: String, help: String },

    #[error("{0}")]
    Bindgen(String),

    #[error("{module}: {reason}")]
    BadModule { module: Utf8PathBuf, reason: String },

    /// A file the build itself produced (cargo's staticlib, Kbuild's
    /// `.ko`) that is damaged: a build failure, not a module the kernel
    /// would refuse.
    #[error("{path}: {why} (a damaged build output; `cargo clean` removes it)")]
    BadBuildOutput { path: Utf8PathBuf, why: String },

    /// A file the user named is not what the command needs.
    #[error("{path}: {why}")]
    BadInput { path: Utf8PathBuf, why: String },

    #[error("{path} is not valid UTF-8")]
    NonUtf8Path { path: std::path::PathBuf },

    /// `cargo metadata` could not read the workspace.
    #[error("reading the cargo workspace: {why}")]
    Project { why: String },

    #[error("{}; module crates (staticlib packages) in {workspace}: {}", match name {
        Some(name) => format!("`{name}` is not a module crate of the workspace"),
        None => "which module crate? pass -p <name>".to_owned(),
    }, if modules.is_empty() { "none".to_owned() } else { modules.join(", ") })]
    NoSuchModule {
        name: Option<String>,
        workspace: Utf8PathBuf,
        modules: Vec<String>,
    },

    #[error("could not run {program}: {why}")]
    Spawn { program: String, why: String },

    /// Cargo failed; it printed the compiler's errors already.
    #[error("could not compile {module} for {release}: `{command}` failed ({status})")]
    Compile {
        module: String,
        release: String,
        command: String,
        status: String,
    },

    /// Several builds failed: the first one's error decides the exit code.
    #[error("{what}: {first}")]
    Failed { what: String, first: Box<Error> },

    #[error(
        "{release}: the archive has no such kernel (closest: {closest}); `--list` shows them all"
    )]
    UnknownRelease { release: String, closest: String },

    #[error("{release}: {arch} packages are not in apt's lists; run as root: dpkg --add-architecture {arch} && apt-get update")]
    ForeignArch { release: String, arch: String },

    /// A fetched kernel that unpacked but cannot be used.
    #[error("{release}: unpacked, but {why}")]
    UnusableFetch { release: String, why: String },

    /// SIGINT, SIGTERM or SIGHUP stopped the build; its children were
    /// stopped and nothing unchecked was left at an output path.
    #[error("interrupted: the build was stopped, and nothing unchecked was installed")]
    Interrupted,

    /// Installing or loading for real, not as root.
    #[error("{what} needs root; run it as root: sudo -E env \"PATH=$PATH\" {command}")]
    NeedsRoot { what: String, command: String },

    /// `--load` for kernels that are not running.
    #[error("--load: the running kernel is {running}, not {releases}; install without --load, or boot that kernel first")]
    NotRunning { releases: String, running: String },

    /// An environment variable or option with a value that makes no sense.
    #[error("{what}: {why}")]
    BadValue { what: String, why: String },

    /// A QEMU guest that did not come up, did not finish, or did not do
    /// what its script asked.
    #[error("{image}: {why}\nlast console lines:\n{tail}")]
    Guest {
        image: Utf8PathBuf,
        why: String,
        tail: String,
    },

    /// A command run in a guest (`cargo kmod run --exec`) failed: the exit
    /// code is its exit status.
    #[error("`{command}` exited with status {status} in the {release} guest")]
    GuestCommand {
        command: String,
        release: String,
        status: i32,
    },

    /// `cargo kmod test` of a module crate that has no tests.
    #[error("no tests in {module}: mark a module of it with #[kmod_runtime::tests]")]
    NoTests { module: String },

    /// In-kernel tests failed (each is reported as it ran).
    #[error("{module}: {what}")]
    TestsFailed { module: String, what: String },

    /// A bug in kmod-build itself.
    #[error("internal error: {what}")]
    Internal { what: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<Utf8PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Exit code for command-line front ends: 3 when the machine lacks
    /// something (a tree, a tool), 4 when a module would be refused by the
    /// kernel, 2 for a file argument that is unusable, 130 when interrupted,
    /// a guest command's own exit status, 101 for failed
    /// in-kernel tests, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoKernelTree { .. }
            | Error::NoSuchKernel { .. }
            | Error::NotATree { .. }
            | Error::MissingFile { .. }
            | Error::BrokenTree { .. }
            | Error::Prerequisite { .. } => 3,
            Error::BadModule { .. } => 4,
            Error::BadInput { .. } | Error::Project { .. } | Error::BadValue { .. } => 2,
            // As the guest command's shell would exit.
            Error::GuestCommand { status, .. } => (*status).clamp(1, 255),
            Error::Spawn { .. } => 3,
            // As libtest exits when tests fail.
            Error::TestsFailed { .. } => 101,
            Error::NoTests { .. } => 2,
            // As a shell reports a command SIGINT stopped.
            Error::Interrupted => 130,
            Error::Failed { first, .. } => first.exit_code(),
            Error::UnknownRelease { .. } | Error::NotRunning { .. } => 2,
            Error::NeedsRoot { .. } => 3,
            Error::ForeignArch { .. } | Error::UnusableFetch { .. } => 3,
            _ => 1,
        }
    }
}

fn more_problems(more: usize) -> String {
    match more {
        0 => String::new(),
        n => format!(" (and {n} more: run `cargo kmod doctor`)"),
    }
}

pub(crate) fn read_to_string(path: &camino::Utf8Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses `path` with a parser that reports errors as
/// `(1-based line, why)`.
pub(crate) fn parse_file<T>(
    path: &camino::Utf8Path,
    parse: impl FnOnce(String) -> Result<T, (usize, String)>,
) -> Result<T> {
    parse(read_to_string(path)?).map_err(|(line, why)| Error::Parse {
        path: path.to_owned(),
        line,
        why,
    })
}
