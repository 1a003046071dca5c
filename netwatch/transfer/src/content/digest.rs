//! SHA-256 digests: chunk ids and whole-file checksums, written as 64 lowercase hex digits.

use std::fmt;

use sha2::Digest as _;

/// A SHA-256 digest. A chunk's id is the digest of its content before compression.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

/// A text that is not a SHA-256 digest in hex.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a SHA-256 digest: expected 64 lowercase hex digits")]
pub struct DigestError {
    /// What was given, cut to a readable length.
    pub text: String,
}

impl Sha256 {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(sha2::Sha256::digest(data).into())
    }

    /// Reads 64 lowercase hex digits (uppercase is refused: ids name objects, and one id
    /// must have one name).
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let fail = || DigestError {
            text: text.chars().take(80).collect(),
        };
        if text.len() != 64 {
            return Err(fail());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let high = hex_value(pair[0]).ok_or_else(fail)?;
            let low = hex_value(pair[1]).ok_or_else(fail)?;
            *byte = high << 4 | low;
        }
        Ok(Self(bytes))
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(self) -> String {
        self.to_string()
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// A digest computed piece by piece, for a file read as a stream.
#[derive(Clone, Default)]
pub struct Hasher(sha2::Sha256);

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_as_lowercase_hex_and_parse_back() {
        // FIPS 180-2's "abc" example.
        let abc = Sha256::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(abc.to_hex(), hex);
        assert_eq!(Sha256::parse(hex), Ok(abc));
        let mut hasher = Hasher::default();
        hasher.update(b"a");
        hasher.update(b"bc");
        assert_eq!(hasher.finish(), abc);
    }

    #[test]
    fn anything_but_64_lowercase_hex_digits_is_refused() {
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        for text in [
            "",
            "ab",
            upper,
            &"g".repeat(64),
            &"a".repeat(65),
            "../../etc/passwd",
        ] {
            assert!(Sha256::parse(text).is_err(), "{text}");
        }
    }
}
