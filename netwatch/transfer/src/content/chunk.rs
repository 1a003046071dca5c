//! Content-defined chunking: FastCDC (the 2020 algorithm) over a stream, so a file is never
//! held whole in memory and an insertion moves only the chunk boundaries near it.

use std::io::{self, Read};

use fastcdc::v2020::StreamCDC;

use bytes::Bytes;

/// desync's and casync's sizes: small enough that an edit costs little, large enough that a
/// 100 MB artifact is ~1,600 chunks and its manifest ~250 KB.
pub const MIN_CHUNK: usize = 16 * 1024;
pub const AVG_CHUNK: usize = 64 * 1024;
pub const MAX_CHUNK: usize = 256 * 1024;
/// Recorded in manifests: chunks cut another way would share nothing with these.
pub const ALGORITHM: &str = "fastcdc-2020";

/// One chunk of a file: where it starts, and its bytes (whose digest is its id).
#[derive(Clone, Debug)]
pub struct Piece {
    pub offset: u64,
    /// Shared, not copied, by whoever digests or stores it.
    pub data: Bytes,
}

/// Cuts a stream into chunks, counting its bytes. Digests are the caller's: the chunks' can
/// be computed several at once, and the whole's on a thread of its own.
pub struct Chunker<R: Read> {
    chunks: StreamCDC<R>,
    size: u64,
}

impl<R: Read> Chunker<R> {
    pub fn new(source: R) -> Self {
        Self {
            chunks: StreamCDC::new(source, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK),
            size: 0,
        }
    }

    /// After the last chunk: the size of everything read.
    pub fn finish(self) -> u64 {
        self.size
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = match self.chunks.next()? {
            Ok(chunk) => chunk,
            Err(error) => return Some(Err(error.into())),
        };
        self.size += chunk.data.len() as u64;
        Some(Ok(Piece {
            offset: chunk.offset,
            data: chunk.data.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    /// Bytes that do not repeat, so that chunk boundaries fall where the content says.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn chunks_cover_the_stream_within_the_size_bounds() {
        let data = noise(3 << 20, 1);
        let mut chunker = Chunker::new(&data[..]);
        let pieces: Vec<Piece> = chunker.by_ref().map(Result::unwrap).collect();
        assert_eq!(chunker.finish(), data.len() as u64);
        let mut offset = 0;
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!(piece.offset, offset);
            assert!(piece.data.len() <= MAX_CHUNK);
            assert!(piece.data.len() >= MIN_CHUNK || i == pieces.len() - 1);
            offset += piece.data.len() as u64;
        }
        assert_eq!(offset, data.len() as u64);
        // 3 MiB at a 64 KiB average: a few dozen chunks.
        assert!((20..100).contains(&pieces.len()), "{}", pieces.len());
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let data = noise(2 << 20, 2);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, *b"inserted");
        let ids = |bytes: &[u8]| -> Vec<Digest> {
            Chunker::new(bytes)
                .map(|p| Digest::sha256(&p.unwrap().data))
                .collect()
        };
        let (before, after) = (ids(&data), ids(&edited));
        let new = after.iter().filter(|id| !before.contains(id)).count();
        assert!(new <= 2, "{new} of {} chunks changed", after.len());
    }

    #[test]
    fn an_empty_stream_has_no_chunks() {
        let mut chunker = Chunker::new(&[][..]);
        assert!(chunker.next().is_none());
        assert_eq!(chunker.finish(), 0);
    }
}
