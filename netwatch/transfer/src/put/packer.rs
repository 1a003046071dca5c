//! Filling packs: new chunks' stored bytes appended one after another until the pack is
//! full, each chunk placed once even when the file holds it more than once. A pack is the
//! chunks' own buffers in order, sent as one body: never copied into one buffer.

use std::collections::HashMap;

use object_store::PutPayload;

use crate::{compress::Encoding, digest::Digest, ChunkRef, PackId, PackSpot};

/// The pack being filled, and where every chunk this put stored went.
#[derive(Default)]
pub struct Packer {
    id: PackId,
    parts: Vec<bytes::Bytes>,
    len: u64,
    /// The artifact's bytes and the chunks in the pack being filled.
    artifact_bytes: u64,
    chunks: usize,
    placed: HashMap<Digest, (ChunkRef, PackSpot)>,
}

/// A full pack, ready to upload.
pub struct Sealed {
    pub id: PackId,
    pub data: PutPayload,
    /// What of the artifact it carries: for progress and the summary.
    pub artifact_bytes: u64,
    pub chunks: usize,
}

impl Packer {
    /// Where an earlier chunk with this id went, if this put stored it already.
    pub fn placed(&self, id: Digest) -> Option<&(ChunkRef, PackSpot)> {
        self.placed.get(&id)
    }

    /// Appends a chunk's stored bytes; returns the chunk and its place.
    pub fn append(
        &mut self,
        id: Digest,
        offset: u64,
        size: usize,
        encoding: Encoding,
        stored: bytes::Bytes,
    ) -> (ChunkRef, PackSpot) {
        let spot = PackSpot {
            pack: self.id,
            offset: self.len,
        };
        let stored_size = stored.len() as u64;
        self.len += stored_size;
        self.parts.push(stored);
        self.artifact_bytes += size as u64;
        self.chunks += 1;
        let chunk = ChunkRef {
            id,
            offset,
            size: size as u32,
            encoding,
            stored_size,
            pack: None,
        };
        self.placed.insert(id, (chunk.clone(), spot));
        (chunk, spot)
    }

    /// The stored bytes in the pack being filled.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The pack being filled, if it holds anything; a new one is started.
    pub fn seal(&mut self) -> Option<Sealed> {
        if self.parts.is_empty() {
            return None;
        }
        self.len = 0;
        let sealed = Sealed {
            id: self.id,
            data: std::mem::take(&mut self.parts).into_iter().collect(),
            artifact_bytes: std::mem::take(&mut self.artifact_bytes),
            chunks: std::mem::take(&mut self.chunks),
        };
        self.id = PackId::new();
        Some(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_go_back_to_back_and_a_sealed_pack_starts_a_new_one() {
        let mut packer = Packer::default();
        let (a, b) = (b"first".as_slice(), b"second".as_slice());
        let (_, at_a) = packer.append(Digest::sha256(a), 0, 5, Encoding::None, a.to_vec().into());
        let (_, at_b) = packer.append(Digest::sha256(b), 5, 6, Encoding::None, b.to_vec().into());
        assert_eq!((at_a.offset, at_b.offset), (0, 5));
        assert_eq!(at_a.pack, at_b.pack);
        let sealed = packer.seal().unwrap();
        let body: Vec<u8> = sealed.data.iter().flat_map(|part| part.to_vec()).collect();
        assert_eq!(body, b"firstsecond");
        assert_eq!((sealed.artifact_bytes, sealed.chunks), (11, 2));
        assert!(packer.seal().is_none(), "an empty pack is not uploaded");
        let (_, at_c) = packer.append(
            Digest::sha256(b"c"),
            11,
            1,
            Encoding::None,
            b"c".to_vec().into(),
        );
        assert_ne!(at_c.pack, at_a.pack);
        assert_eq!(at_c.offset, 0);
        assert!(
            packer.placed(Digest::sha256(a)).is_some(),
            "placed chunks are remembered"
        );
    }
}
