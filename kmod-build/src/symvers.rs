use std::hash::BuildHasher;
use std::ops::Range;

use camino::Utf8Path;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::error::{parse_file, Result};

/// How a symbol is exported: GPL-only exports are hidden from modules whose
/// license is not GPL-compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Plain,
    GplOnly,
}

/// One line of `Module.symvers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export<'a> {
    pub crc: u32,
    pub module: &'a str,
    pub kind: ExportKind,
    /// Empty when the symbol is in no namespace.
    pub namespace: &'a str,
}

/// The exports a tree's `Module.symvers` lists, by symbol name.
///
/// A check reads a 27k-line file to look up a handful of symbols, so the
/// table keeps the file's text and indexes byte ranges of it instead of
/// allocating three strings per line.
#[derive(Debug, Clone, Default)]
pub struct Symvers {
    text: String,
    exports: HashTable<Line>,
    hasher: DefaultHashBuilder,
}

/// The fields of one line, as ranges of [`Symvers::text`].
#[derive(Debug, Clone)]
struct Line {
    crc: u32,
    kind: ExportKind,
    name: Range<u32>,
    module: Range<u32>,
    namespace: Range<u32>,
}

impl Symvers {
    pub fn load(path: &Utf8Path) -> Result<Symvers> {
        parse_file(path, Symvers::parse)
    }

    /// Parses `0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_SYMBOL[_GPL]<TAB>namespace`
    /// lines; on error returns the 1-based line. A later line for the same
    /// symbol replaces an earlier one.
    pub fn parse(text: impl Into<String>) -> Result<Symvers, (usize, String)> {
        let text = text.into();
        if u32::try_from(text.len()).is_err() {
            return Err((
                0,
                format!("{} bytes is too large for a Module.symvers", text.len()),
            ));
        }
        let hasher = DefaultHashBuilder::default();
        let mut exports = HashTable::with_capacity(text.len() / 64);
        let span = |part: &str| {
            let start = part.as_ptr() as usize - text.as_ptr() as usize;
            start as u32..(start + part.len()) as u32
        };
        for (index, (line, fields, count)) in tab_separated_lines(&text).enumerate() {
            if line.is_empty() {
                continue;
            }
            let fail = |why: String| (index + 1, why);
            if count < 4 {
                return Err(fail(format!(
                    "expected at least 4 tab-separated fields in `{line}`"
                )));
            }
            let [crc, name, module, kind, namespace] = fields;
            let crc = crc
                .strip_prefix("0x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .ok_or_else(|| fail(format!("`{crc}` is not a 0x-prefixed 32-bit CRC")))?;
            let kind = match kind {
                "EXPORT_SYMBOL" => ExportKind::Plain,
                "EXPORT_SYMBOL_GPL" => ExportKind::GplOnly,
                other => return Err(fail(format!("unknown export type `{other}`"))),
            };
            let line = Line {
                crc,
                kind,
                name: span(name),
                module: span(module),
                namespace: span(namespace),
            };
            match exports.entry(
                hasher.hash_one(name),
                |old: &Line| slice(&text, &old.name) == name,
                |old: &Line| hasher.hash_one(slice(&text, &old.name)),
            ) {
                hashbrown::hash_table::Entry::Occupied(mut old) => *old.get_mut() = line,
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(line);
                }
            }
        }
        Ok(Symvers {
            text,
            exports,
            hasher,
        })
    }

    pub fn get(&self, symbol: &str) -> Option<Export<'_>> {
        let text = &self.text;
        let line = self.exports.find(self.hasher.hash_one(symbol), |line| {
            slice(text, &line.name) == symbol
        })?;
        Some(Export {
            crc: line.crc,
            module: slice(text, &line.module),
            kind: line.kind,
            namespace: slice(text, &line.namespace),
        })
    }

    pub fn len(&self) -> usize {
        self.exports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exports.is_empty()
    }
}

/// The field of `text` that a [`Line`] range names.
fn slice<'a>(text: &'a str, range: &Range<u32>) -> &'a str {
    &text[range.start as usize..range.end as usize]
}

/// Fields of a `Module.symvers` line: CRC, symbol, module, export type and
/// namespace.
const FIELDS: usize = 5;

/// Each line of `text` with its first [`FIELDS`] tab-separated fields
/// (missing ones empty, all slices of `text`) and how many it has, found in one `memchr` pass:
/// splitting lines, then fields, was most of the time a check took.
fn tab_separated_lines(text: &str) -> impl Iterator<Item = (&str, [&str; FIELDS], usize)> {
    let end_of_text = text.len();
    let mut separators =
        memchr::memchr2_iter(b'\t', b'\n', text.as_bytes()).chain(std::iter::once(end_of_text));
    let mut line_start = 0;
    std::iter::from_fn(move || {
        if line_start >= end_of_text {
            return None;
        }
        let mut fields = [""; FIELDS];
        let mut count = 0;
        let mut field_start = line_start;
        for end in separators.by_ref() {
            if let Some(field) = fields.get_mut(count) {
                *field = &text[field_start..end];
            }
            count += 1;
            field_start = end + 1;
            if end == end_of_text || text.as_bytes()[end] == b'\n' {
                let line = &text[line_start..end];
                line_start = end + 1;
                if let Some(last) = fields.get_mut(count - 1) {
                    *last = last.strip_suffix('\r').unwrap_or(last);
                }
                // Missing fields are empty slices of `text` too.
                for missing in fields.iter_mut().skip(count) {
                    *missing = &text[end..end];
                }
                return Some((line.strip_suffix('\r').unwrap_or(line), fields, count));
            }
        }
        None
    })
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
    fn splits_lines_like_str_lines() {
        let symvers = Symvers::parse(
            "0x1\ta\tvmlinux\tEXPORT_SYMBOL\r\n\n\
             0x2\tb\tm\tEXPORT_SYMBOL_GPL\tNS\textra\r\n\
             0x3\ta\tvmlinux\tEXPORT_SYMBOL\tLAST",
        )
        .unwrap();
        assert_eq!(symvers.len(), 2);
        let b = symvers.get("b").unwrap();
        assert_eq!((b.crc, b.module, b.namespace), (2, "m", "NS"));
        // The later line for `a` wins; the last line needs no newline.
        let a = symvers.get("a").unwrap();
        assert_eq!((a.crc, a.namespace), (3, "LAST"));
        assert!(Symvers::parse("").unwrap().is_empty());
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
