use std::collections::HashMap;

use camino::Utf8Path;

use crate::error::{parse_file, Result};

/// How a symbol is exported: GPL-only exports are hidden from modules whose
/// license is not GPL-compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Plain,
    GplOnly,
}

/// One line of `Module.symvers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub crc: u32,
    pub module: String,
    pub kind: ExportKind,
    /// Empty when the symbol is in no namespace.
    pub namespace: String,
}

/// The exports a tree's `Module.symvers` lists, by symbol name.
#[derive(Debug, Clone, Default)]
pub struct Symvers {
    exports: HashMap<String, Export>,
}

impl Symvers {
    pub fn load(path: &Utf8Path) -> Result<Symvers> {
        parse_file(path, Symvers::parse)
    }

    /// Parses `0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_SYMBOL[_GPL]<TAB>namespace`
    /// lines; on error returns the 1-based line.
    pub fn parse(text: &str) -> Result<Symvers, (usize, String)> {
        let mut exports = HashMap::with_capacity(text.len() / 64);
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let fail = |why: String| (index + 1, why);
            let mut fields = line.split('\t');
            let (Some(crc), Some(name), Some(module), Some(kind)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(fail(format!(
                    "expected at least 4 tab-separated fields in `{line}`"
                )));
            };
            let namespace = fields.next().unwrap_or("");
            let crc = crc
                .strip_prefix("0x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .ok_or_else(|| fail(format!("`{crc}` is not a 0x-prefixed 32-bit CRC")))?;
            let kind = match kind {
                "EXPORT_SYMBOL" => ExportKind::Plain,
                "EXPORT_SYMBOL_GPL" => ExportKind::GplOnly,
                other => return Err(fail(format!("unknown export type `{other}`"))),
            };
            exports.insert(
                name.to_owned(),
                Export {
                    crc,
                    module: module.to_owned(),
                    kind,
                    namespace: namespace.to_owned(),
                },
            );
        }
        Ok(Symvers { exports })
    }

    pub fn get(&self, symbol: &str) -> Option<&Export> {
        self.exports.get(symbol)
    }

    pub fn len(&self) -> usize {
        self.exports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_gpl_and_namespaced_exports() {
        let symvers = Symvers::parse(
            "0xf7370f56\tsystem_state\tvmlinux\tEXPORT_SYMBOL\t\n\
             0xbea5ff1e\tstatic_key_initialized\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
             0x12345678\tusb_stor_x\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\tUSB_STORAGE\n",
        )
        .unwrap();
        assert_eq!(symvers.len(), 3);
        let state = symvers.get("system_state").unwrap();
        assert_eq!((state.crc, state.kind), (0xf7370f56, ExportKind::Plain));
        assert_eq!(
            symvers.get("static_key_initialized").unwrap().kind,
            ExportKind::GplOnly
        );
        assert_eq!(symvers.get("usb_stor_x").unwrap().namespace, "USB_STORAGE");
        assert!(symvers.get("nope").is_none());
    }

    #[test]
    fn rejects_bad_lines_with_line_number() {
        assert_eq!(
            Symvers::parse("0x1\ta\tvmlinux\tEXPORT_SYMBOL\t\nbroken")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(
            Symvers::parse("zz\ta\tvmlinux\tEXPORT_SYMBOL\t")
                .unwrap_err()
                .0,
            1
        );
        assert_eq!(
            Symvers::parse("0x1\ta\tvmlinux\tEXPORT_WHAT\t")
                .unwrap_err()
                .0,
            1
        );
    }
}
