use camino::Utf8Path;
use hashbrown::HashMap;

use crate::error::{parse_file, Result};

/// A kernel configuration as Kbuild sees it (`include/config/auto.conf`):
/// only options that are set appear, `=n` ones are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    options: HashMap<String, String>,
}

impl Config {
    pub fn load(path: &Utf8Path) -> Result<Config> {
        parse_file(path, |text| Config::parse(&text))
    }

    /// Parses `CONFIG_X=value` lines; on error returns the 1-based line.
    pub fn parse(text: &str) -> Result<Config, (usize, String)> {
        let mut options = HashMap::with_capacity(text.len() / 32);
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err((
                    index + 1,
                    format!("expected CONFIG_NAME=value, found `{line}`"),
                ));
            };
            if !name.starts_with("CONFIG_") {
                return Err((index + 1, format!("`{name}` is not a CONFIG_ option")));
            }
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(unescape)
                .unwrap_or_else(|| value.to_owned());
            options.insert(name.to_owned(), value);
        }
        Ok(Config { options })
    }

    /// The raw value of `name` (with the `CONFIG_` prefix), quotes removed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// Whether `name` is built in (`=y`).
    pub fn is_y(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }

    /// Whether any of `names` is `=y`: options renamed between releases
    /// (`CONFIG_RETPOLINE` became `CONFIG_MITIGATION_RETPOLINE` in 6.9).
    pub fn any_y(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.is_y(name))
    }

    /// Every option, sorted by name so that what is generated from it is
    /// the same from run to run.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut options: Vec<_> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        options.sort_unstable();
        options.into_iter()
    }
}

/// A quoted value's text: Kconfig escapes `"` and `\` inside quotes.
fn unescape(quoted: &str) -> String {
    if quoted.contains('\\') {
        quoted.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        quoted.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_quotes() {
        let config = Config::parse(
            "# comment\nCONFIG_MODVERSIONS=y\nCONFIG_FUNCTION_PADDING_BYTES=16\n\
             CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0) 12.2.0\"\nCONFIG_X=m\n",
        )
        .unwrap();
        assert!(config.is_y("CONFIG_MODVERSIONS"));
        assert!(!config.is_y("CONFIG_X"));
        assert_eq!(config.get("CONFIG_FUNCTION_PADDING_BYTES"), Some("16"));
        assert_eq!(
            config.get("CONFIG_CC_VERSION_TEXT"),
            Some("gcc-12 (Debian 12.2.0) 12.2.0")
        );
        assert!(config.any_y(&["CONFIG_RETPOLINE", "CONFIG_MODVERSIONS"]));
        assert_eq!(config.get("CONFIG_NOPE"), None);
    }

    #[test]
    fn rejects_garbage_with_line_number() {
        assert_eq!(Config::parse("CONFIG_A=y\nnonsense\n").unwrap_err().0, 2);
        assert_eq!(Config::parse("FOO=y\n").unwrap_err().0, 1);
    }
}
