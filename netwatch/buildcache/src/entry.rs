//! What a build tool names and stores: an entry's key, taken from the request path, and the
//! sealed form an entry is kept in, locally and on the mirrors.
//!
//! Every tool's layout is a path: ccache's `subdirs` (`/<prefix>/ab/cdef…`) and `flat`
//! (`/<prefix>/abcdef…`), Bazel's `/<prefix>/ac/<sha256>` and `/<prefix>/cas/<sha256>`. The
//! path, whole, is the key, so two prefixes are two caches, as each tool expects. Bazel's
//! `cas` entries are named by their content's SHA-256, which is checked when they are stored.
//!
//! A sealed entry is `NWBC1\n`, the SHA-256 of the key's path, the SHA-256 of the content,
//! the content's length (8 bytes, little-endian) and the content. Opening one checks all of
//! it, so a torn local file, a truncated upload or an object stored under another name is a
//! miss, never a wrong answer.

use bytes::{BufMut, Bytes, BytesMut};
use netwatch_transfer::{Algorithm, Digest};

/// The longest path taken as a key: ccache's keys are 30-odd characters, Bazel's 64.
pub const MAX_KEY_PATH: usize = 1024;
const MAGIC: &[u8; 6] = b"NWBC1\n";
const HEADER: usize = MAGIC.len() + 32 + 32 + 8;

/// What kind of entry a path names: it decides what is checked on a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bazel's content-addressable store: the content's SHA-256 is the last component.
    Cas(Digest),
    /// Anything else: ccache's results, Bazel's action cache.
    Opaque,
}

/// An entry's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryKey {
    path: String,
    id: Digest,
    kind: Kind,
}

/// A request path that cannot be a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the path is empty: name an entry, like /ccache/ab/cdef01…")]
    Empty,
    #[error("the path is {len} bytes long, more than the {MAX_KEY_PATH} a key may have")]
    TooLong { len: usize },
    #[error("the path has a `..`, `.` or empty component: entries are named by plain paths")]
    Component,
    #[error("the path has a control character or a query")]
    Character,
}

impl EntryKey {
    /// The key a request path names.
    pub fn from_path(path: &str) -> Result<Self, KeyError> {
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            return Err(KeyError::Empty);
        }
        if path.len() > MAX_KEY_PATH {
            return Err(KeyError::TooLong { len: path.len() });
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b'?') {
            return Err(KeyError::Character);
        }
        let components: Vec<&str> = path.split('/').collect();
        if components
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(KeyError::Component);
        }
        let kind = match components.as_slice() {
            [.., "cas", last] => {
                Digest::parse(Algorithm::Sha256, last).map_or(Kind::Opaque, Kind::Cas)
            }
            _ => Kind::Opaque,
        };
        Ok(Self {
            path: path.to_string(),
            id: Digest::sha256(path.as_bytes()),
            kind,
        })
    }

    /// The path, without its leading `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The SHA-256 of the path: the name the entry is stored under.
    pub fn id(&self) -> Digest {
        self.id
    }

    /// Where the entry lives on a mirror.
    pub fn object_path(&self) -> String {
        object_path(&self.id.to_hex())
    }

    /// Seals `content` under this key, after checking a `cas` entry's digest.
    pub fn seal(&self, content: &[u8]) -> Result<Bytes, SealError> {
        let digest = Digest::sha256(content);
        if let Kind::Cas(named) = self.kind {
            if named != digest {
                return Err(SealError::CasMismatch {
                    named: named.to_hex(),
                    actual: digest.to_hex(),
                });
            }
        }
        let mut sealed = BytesMut::with_capacity(HEADER + content.len());
        sealed.put_slice(MAGIC);
        sealed.put_slice(self.id.as_bytes());
        sealed.put_slice(digest.as_bytes());
        sealed.put_u64_le(content.len() as u64);
        sealed.put_slice(content);
        Ok(sealed.freeze())
    }

    /// The content of `sealed`, if it is whole, this key's, and matches its digest.
    pub fn open(&self, sealed: &Bytes) -> Result<Bytes, OpenError> {
        if sealed.len() < HEADER || &sealed[..MAGIC.len()] != MAGIC {
            return Err(OpenError::NotSealed);
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + 32];
        if id != self.id.as_bytes().as_slice() {
            return Err(OpenError::OtherKey);
        }
        let digest = &sealed[MAGIC.len() + 32..MAGIC.len() + 64];
        let mut len = [0u8; 8];
        len.copy_from_slice(&sealed[MAGIC.len() + 64..HEADER]);
        let content = sealed.slice(HEADER..);
        if u64::from_le_bytes(len) != content.len() as u64 {
            return Err(OpenError::Length);
        }
        if digest != Digest::sha256(&content).as_bytes().as_slice() {
            return Err(OpenError::Digest);
        }
        Ok(content)
    }
}

/// Where the entry whose id is `hex` lives on a mirror.
pub fn object_path(hex: &str) -> String {
    format!("buildcache/v1/{}/{hex}", &hex[..2.min(hex.len())])
}

/// The bytes a sealed entry adds to its content.
pub const SEAL_OVERHEAD: usize = HEADER;

/// Why content cannot be stored under a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a cas entry must be named by its content's SHA-256: the path names {named}, the content's is {actual}")]
    CasMismatch { named: String, actual: String },
}

/// Why a stored entry was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed entry (a torn write, or another program's file)")]
    NotSealed,
    #[error("sealed under another key")]
    OtherKey,
    #[error("its length does not match its header (truncated)")]
    Length,
    #[error("its content does not match its SHA-256")]
    Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_is_a_key_and_bad_paths_are_refused() {
        let ccache = EntryKey::from_path("/ccache/ab/cdef0123").unwrap();
        assert_eq!(ccache.path(), "ccache/ab/cdef0123");
        assert_eq!(ccache.kind(), Kind::Opaque);
        let digest = Digest::sha256(b"hello");
        let cas = EntryKey::from_path(&format!("/bazel/cas/{digest}")).unwrap();
        assert_eq!(cas.kind(), Kind::Cas(digest));
        let ac = EntryKey::from_path(&format!("/ac/{digest}")).unwrap();
        assert_eq!(ac.kind(), Kind::Opaque);
        assert_ne!(
            ac.id(),
            cas.id(),
            "ac and cas of one digest are two entries"
        );
        assert!(ac.object_path().starts_with("buildcache/v1/"));

        assert_eq!(EntryKey::from_path("/"), Err(KeyError::Empty));
        assert_eq!(EntryKey::from_path("/a/../b"), Err(KeyError::Component));
        assert_eq!(EntryKey::from_path("/a//b"), Err(KeyError::Component));
        assert_eq!(EntryKey::from_path("/a\nb"), Err(KeyError::Character));
        let long = "a".repeat(MAX_KEY_PATH + 1);
        assert!(matches!(
            EntryKey::from_path(&long),
            Err(KeyError::TooLong { .. })
        ));
    }

    #[test]
    fn a_sealed_entry_opens_only_whole_and_under_its_own_key() {
        let key = EntryKey::from_path("/ccache/ab/cd").unwrap();
        let sealed = key.seal(b"object file").unwrap();
        assert_eq!(key.open(&sealed).unwrap(), &b"object file"[..]);

        let other = EntryKey::from_path("/ccache/ab/ce").unwrap();
        assert_eq!(other.open(&sealed), Err(OpenError::OtherKey));
        let torn = sealed.slice(..sealed.len() - 1);
        assert_eq!(key.open(&torn), Err(OpenError::Length));
        let mut flipped = sealed.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&Bytes::from(flipped)), Err(OpenError::Digest));
        assert_eq!(
            key.open(&Bytes::from_static(b"hello")),
            Err(OpenError::NotSealed)
        );
    }

    #[test]
    fn a_cas_entry_must_match_its_name() {
        let digest = Digest::sha256(b"right");
        let key = EntryKey::from_path(&format!("/cas/{digest}")).unwrap();
        assert!(key.seal(b"right").is_ok());
        assert!(matches!(
            key.seal(b"wrong"),
            Err(SealError::CasMismatch { .. })
        ));
    }
}
