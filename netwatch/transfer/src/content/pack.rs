//! Packs: the objects a mirror keeps chunks in since format 2. A pack is stored chunks back to
//! back, nothing else; the manifests that use it say which chunk lies where. One object per
//! few MiB of chunks instead of one per chunk is what keeps a transfer to a few requests.

use std::fmt;

/// Packs `put` fills before it uploads them: large enough that requests are few, small enough
/// that a retry or a killed transfer loses little.
pub const DEFAULT_PACK_SIZE: u64 = 32 << 20;
/// The smallest and largest pack size a user may choose.
pub const MIN_PACK_SIZE: u64 = 1 << 20;
pub const MAX_PACK_SIZE: u64 = 1 << 30;
/// No manifest may place a chunk past this in a pack: a pack is never larger than the
/// largest pack size and one chunk.
pub const MAX_PACK_OFFSET: u64 = MAX_PACK_SIZE;

/// A pack's name: 128 random bits, written as 32 lowercase hex digits. Random, not a digest
/// of the content: the chunk ids in the manifest check every byte already, and naming by
/// digest would cost a second hash over everything uploaded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(u128);

/// A text that is not a pack id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a pack id: expected 32 lowercase hex digits")]
pub struct PackIdError {
    pub text: String,
}

impl PackId {
    /// A new, random id.
    pub fn new() -> Self {
        Self(fastrand::u128(..))
    }

    pub fn parse(text: &str) -> Result<Self, PackIdError> {
        let fail = || PackIdError {
            text: text.chars().take(80).collect(),
        };
        let lowercase_hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if text.len() != 32 || !lowercase_hex {
            return Err(fail());
        }
        u128::from_str_radix(text, 16).map(Self).map_err(|_| fail())
    }
}

impl Default for PackId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({self})")
    }
}

/// Where a chunk lies in a pack: the pack, and the byte its stored form starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackSpot {
    pub pack: PackId,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_anything_else_is_refused() {
        let id = PackId::new();
        assert_eq!(PackId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(id.to_string().len(), 32);
        for bad in [
            "",
            "../x",
            &"A".repeat(32),
            &"0".repeat(31),
            &"0".repeat(64),
            "+0000000000000000000000000000000",
        ] {
            assert!(PackId::parse(bad).is_err(), "{bad}");
        }
    }
}
