//! A span's bytes cut into its chunks as they arrive, each checked against its id and
//! written into the output the moment its last byte is in: the bytes are hashed and written
//! while still in the CPU's cache, and no span-sized buffer is filled first.

use super::{batch::Moved, place::Placer};
use crate::{compress::decode_in_place, error::TransferError, fallback::Failure, ChunkRef};

/// What one request brought: the sound chunks, now in the output, and how many were not.
#[derive(Default)]
pub struct Got {
    pub sound: Moved,
    pub bad: usize,
}

/// A span's bytes as they arrive, cut into its chunks: each is checked (and placed) once
/// its last byte is in. The gaps between chunks (bytes a merged range reads past) are
/// skipped; a chunk the span ends before is never checked, so it stays missing.
pub struct Arrivals<'a, 'c> {
    /// The pack offset of the next byte to arrive.
    at: u64,
    chunks: &'c [(ChunkRef, u64)],
    next: usize,
    /// The current chunk's bytes so far.
    body: Vec<u8>,
    checker: Checker<'a>,
    /// Bytes that arrived, gaps included.
    bytes: u64,
}

impl<'a, 'c> Arrivals<'a, 'c> {
    pub fn new(start: u64, chunks: &'c [(ChunkRef, u64)], checker: Checker<'a>) -> Self {
        let largest = chunks.iter().map(|(c, _)| c.stored_size).max().unwrap_or(0);
        Self {
            at: start,
            chunks,
            next: 0,
            body: Vec::with_capacity(largest as usize),
            checker,
            bytes: 0,
        }
    }

    pub fn take(&mut self, mut piece: &[u8]) {
        self.bytes += piece.len() as u64;
        while !piece.is_empty() {
            let Some((chunk, offset)) = self.chunks.get(self.next) else {
                return;
            };
            if self.at < *offset {
                let skip = (offset - self.at).min(piece.len() as u64);
                self.at += skip;
                piece = &piece[skip as usize..];
                continue;
            }
            let stored = chunk.stored_size as usize;
            if self.body.is_empty() && piece.len() >= stored {
                // Whole in this piece: checked where it lies, not copied first.
                self.checker.check(chunk, &piece[..stored]);
                self.at += stored as u64;
                piece = &piece[stored..];
                self.next += 1;
                continue;
            }
            let wanted = stored.saturating_sub(self.body.len());
            let part = wanted.min(piece.len());
            self.body.extend_from_slice(&piece[..part]);
            self.at += part as u64;
            piece = &piece[part..];
            if self.body.len() as u64 == chunk.stored_size {
                self.checker.check(chunk, &self.body);
                self.body.clear();
                self.next += 1;
            }
        }
    }

    pub fn finish(self) -> Checker<'a> {
        let mut checker = self.checker;
        checker.got.sound.bytes = self.bytes;
        checker
    }
}

/// Checks chunks and writes the sound ones into the output.
pub struct Checker<'a> {
    placer: &'a Placer,
    name: &'a str,
    pub got: Got,
    /// Which of the span's chunks were sound, by position.
    pub sound: Vec<usize>,
    /// Writing the output failed: nothing a mirror can fix.
    pub fatal: Option<Failure>,
}

impl<'a> Checker<'a> {
    pub fn new(placer: &'a Placer, name: &'a str) -> Self {
        Self {
            placer,
            name,
            got: Got::default(),
            sound: Vec::new(),
            fatal: None,
        }
    }

    pub fn check(&mut self, chunk: &ChunkRef, body: &[u8]) {
        if self.fatal.is_some() {
            return;
        }
        let name = self.name;
        match decode_in_place(body, chunk) {
            Ok(data) => {
                if let Err(e) = self.placer.place(chunk.id, &data) {
                    self.fatal = Some(Failure::Fatal(TransferError::output(
                        "writing",
                        "the output",
                    )(e)));
                    return;
                }
                self.sound.push(self.got.sound.chunks + self.got.bad);
                self.got.sound.chunks += 1;
                self.got.sound.artifact_bytes += u64::from(chunk.size);
            }
            Err(bad_data) => {
                tracing::warn!(mirror = %name, chunk = %chunk.id, "mirror `{name}` sent bad data: {bad_data}");
                self.got.bad += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{digest::Digest, ArtifactKey, Encoding, Manifest};

    fn chunk(data: &[u8], offset: u64) -> ChunkRef {
        ChunkRef {
            id: Digest::sha256(data),
            offset,
            size: data.len() as u32,
            encoding: Encoding::None,
            stored_size: data.len() as u64,
            pack: None,
        }
    }

    #[test]
    fn chunks_split_across_pieces_and_gaps_are_checked_and_placed_whole() {
        let (a, b, c) = (vec![1u8; 700], vec![2u8; 300], vec![3u8; 500]);
        // In the pack: a at 100, b right after, a gap of 50 bytes, c (sent corrupted).
        let mut pack = vec![9u8; 100];
        pack.extend(&a);
        pack.extend(&b);
        pack.extend([9u8; 50]);
        let mut bad_c = c.clone();
        bad_c[10] ^= 1;
        pack.extend(&bad_c);
        let chunks = vec![
            (chunk(&a, 0), 100),
            (chunk(&b, 700), 800),
            (chunk(&c, 1000), 1150),
        ];
        let manifest = Manifest {
            key: "t/x".parse::<ArtifactKey>().unwrap(),
            size: 1500,
            checksum: Digest::blake3(b""),
            created_unix_ms: 0,
            chunks: chunks.iter().map(|(c, _)| c.clone()).collect(),
            packs: Vec::new(),
        };
        // Pieces that split chunks (copied together first), and one piece with every chunk
        // whole in it (checked where they lie).
        for piece_size in [333, pack.len()] {
            let file = tempfile::tempfile().unwrap();
            let placer = Placer::new(file.try_clone().unwrap(), &manifest).unwrap();
            // Reads begin at the span's first chunk (offset 100 of the pack).
            let mut arrivals = Arrivals::new(100, &chunks, Checker::new(&placer, "m"));
            for piece in pack[100..].chunks(piece_size) {
                arrivals.take(piece);
            }
            let checker = arrivals.finish();
            assert_eq!((checker.got.sound.chunks, checker.got.bad), (2, 1));
            assert_eq!(checker.sound, vec![0, 1]);
            assert_eq!(checker.got.sound.bytes, pack.len() as u64 - 100);
            assert!(placer.has(chunks[0].0.id) && placer.has(chunks[1].0.id));
            assert!(
                !placer.has(chunks[2].0.id),
                "a corrupted chunk stays missing"
            );
            let mut out = vec![0u8; 1000];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut out, 0).unwrap();
            assert_eq!(
                out,
                [a.clone(), b.clone()].concat(),
                "pieces of {piece_size}"
            );
        }
    }
}
