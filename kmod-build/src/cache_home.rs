//! The per-user cache that outlives any one checkout: fetched kernels,
//! core/alloc sysroots, anything downloaded or built once per machine.

use camino::Utf8PathBuf;

/// Environment variable that overrides where the per-user cache lives.
pub const CACHE_HOME_ENV: &str = "KMOD_BUILD_CACHE_HOME";

/// `$KMOD_BUILD_CACHE_HOME`, else `$XDG_CACHE_HOME/kmod-build`, else
/// `~/.cache/kmod-build`; root without a home (DKMS hooks) gets
/// `/var/cache/kmod-build`.
pub fn cache_home() -> Utf8PathBuf {
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|value| value.starts_with('/'))
            .map(Utf8PathBuf::from)
    };
    if let Some(dir) = from_env(CACHE_HOME_ENV) {
        return dir;
    }
    if let Some(dir) = from_env("XDG_CACHE_HOME") {
        return dir.join("kmod-build");
    }
    match from_env("HOME") {
        Some(home) if home != "/" => home.join(".cache/kmod-build"),
        _ => Utf8PathBuf::from("/var/cache/kmod-build"),
    }
}
