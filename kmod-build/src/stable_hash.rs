//! Keys of caches that outlive one process (bindings, sysroots,
//! fingerprints): SHA-256 over length-prefixed parts, so a key means the
//! same thing under every toolchain, unlike `DefaultHasher`, whose output
//! the standard library may change in any release.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default)]
pub struct StableHash(Sha256);

impl StableHash {
    pub fn new() -> StableHash {
        StableHash::default()
    }

    /// Adds one part; the length prefix keeps `("ab", "c")` and `("a",
    /// "bc")` apart.
    pub fn part(&mut self, bytes: impl AsRef<[u8]>) -> &mut StableHash {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a list as one part per item after its length.
    pub fn parts<T: AsRef<[u8]>>(&mut self, items: &[T]) -> &mut StableHash {
        self.part((items.len() as u64).to_le_bytes());
        for item in items {
            self.part(item);
        }
        self
    }

    /// The first 16 hex digits: enough to tell cache entries apart.
    pub fn hex16(&self) -> String {
        self.hex()[..16].to_owned()
    }

    /// All 64 hex digits: a checksum.
    pub fn hex(&self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited_and_the_value_is_fixed() {
        let key = |a: &str, b: &str| StableHash::new().part(a).part(b).hex16();
        assert_ne!(key("ab", "c"), key("a", "bc"));
        // The value itself is part of the promise: a cache written by one
        // build of kmod-build is found by the next.
        assert_eq!(key("", ""), "374708fff7719dd5");
    }
}
