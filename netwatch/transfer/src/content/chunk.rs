//! Content-defined chunking: FastCDC (the 2020 algorithm) over a stream, so a file is never
//! held whole in memory and an insertion moves only the chunk boundaries near it.
//!
//! The stream is read in blocks of `BLOCK` bytes and each chunk handed on is a slice of its
//! block, not a copy; blocks are recycled once every chunk of theirs is dropped (uploaded),
//! so a put does not fault in fresh memory for every chunk. A cut is made only where the
//! block holds `MAX_CHUNK` bytes past the chunk's start (or the stream has ended): exactly
//! what FastCDC's own stream reader sees, so the boundaries are the same.

use std::{
    io::{self, Read},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use fastcdc::v2020::FastCDC;

/// desync's and casync's sizes: small enough that an edit costs little, large enough that a
/// 100 MB artifact is ~1,600 chunks and its manifest ~250 KB.
pub const MIN_CHUNK: usize = 16 * 1024;
pub const AVG_CHUNK: usize = 64 * 1024;
pub const MAX_CHUNK: usize = 256 * 1024;
/// Recorded in manifests: chunks cut another way would share nothing with these.
pub const ALGORITHM: &str = "fastcdc-2020";
/// How much is read at a time.
const BLOCK: usize = 8 << 20;
/// Blocks kept for reuse: those of the packs a put has in flight, and a few.
const SPARE_BLOCKS: usize = 8;

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
    source: R,
    /// What was read and not yet cut starts at `at`.
    block: Bytes,
    at: usize,
    /// The stream offset of `block[at]`.
    offset: u64,
    ended: bool,
    spare: Spare,
}

impl<R: Read> Chunker<R> {
    pub fn new(source: R) -> Self {
        Self {
            source,
            block: Bytes::new(),
            at: 0,
            offset: 0,
            ended: false,
            spare: Spare::default(),
        }
    }

    /// The next chunks in order, about `bytes` of them (at least one; none at the end).
    /// Handed on in groups, chunks wake the threads that digest and upload them once a group,
    /// not once a chunk: a put of 512 MiB has ~8,000 chunks.
    pub fn next_batch(&mut self, bytes: usize) -> io::Result<Vec<Piece>> {
        let mut batch = Vec::new();
        let mut size = 0;
        while size < bytes {
            let Some(piece) = self.next() else { break };
            let piece = piece?;
            size += piece.data.len();
            batch.push(piece);
        }
        Ok(batch)
    }

    /// After the last chunk: the size of everything read.
    pub fn finish(self) -> u64 {
        self.offset
    }

    /// A new block: the uncut tail of the last one, then as much of the stream as fits.
    fn refill(&mut self) -> io::Result<()> {
        let mut next = self.spare.take();
        next.extend_from_slice(&self.block[self.at..]);
        let room = (BLOCK - next.len()) as u64;
        // Into the spare capacity, without zeroing it first.
        let read = (&mut self.source).take(room).read_to_end(&mut next)?;
        self.ended = (read as u64) < room;
        self.block = Bytes::from_owner(Block {
            data: next,
            spare: self.spare.clone(),
        });
        self.at = 0;
        Ok(())
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.block.len() - self.at < MAX_CHUNK && !self.ended {
            if let Err(error) = self.refill() {
                return Some(Err(error));
            }
        }
        let remaining = self.block.len() - self.at;
        if remaining == 0 {
            return None;
        }
        let cdc = FastCDC::new(&self.block, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
        let (_, end) = cdc.cut(self.at, remaining.min(MAX_CHUNK));
        let piece = Piece {
            offset: self.offset,
            data: self.block.slice(self.at..end),
        };
        self.offset += (end - self.at) as u64;
        self.at = end;
        Some(Ok(piece))
    }
}

/// Blocks whose chunks are all gone, ready to be filled again.
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spare {
    fn take(&self) -> Vec<u8> {
        let reused = self.0.lock().expect("never held across a panic").pop();
        reused.unwrap_or_else(|| Vec::with_capacity(BLOCK))
    }
}

/// A block's bytes, returned to the spares when the last chunk sharing them is dropped.
struct Block {
    data: Vec<u8>,
    spare: Spare,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        let mut spare = self.spare.0.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_BLOCKS {
            spare.push(data);
        }
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

    /// A reader that hands over at most `most` bytes a call, as pipes and sockets may.
    struct Trickle<'a> {
        data: &'a [u8],
        most: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.most).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_boundaries_are_those_of_fastcdcs_own_stream_reader() {
        use fastcdc::v2020::StreamCDC;
        for (len, most) in [
            (0, usize::MAX),
            (1_000, usize::MAX),
            (MIN_CHUNK + 1, 7_000),
            (BLOCK, usize::MAX),
            (BLOCK - 1, 100_000),
            (BLOCK + 1, usize::MAX),
            (3 * BLOCK + 12_345, 1 << 20),
        ] {
            let data = noise(len, len as u64);
            let theirs: Vec<(u64, usize)> =
                StreamCDC::new(&data[..], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                    .map(|c| c.map(|c| (c.offset, c.length)).unwrap())
                    .collect();
            let mut chunker = Chunker::new(Trickle { data: &data, most });
            let ours: Vec<(u64, usize)> = chunker
                .by_ref()
                .map(|p| p.map(|p| (p.offset, p.data.len())).unwrap())
                .collect();
            assert_eq!(ours, theirs, "{len} bytes, {most} a read");
            assert_eq!(chunker.finish(), len as u64);
        }
    }

    #[test]
    fn blocks_are_reused_once_their_chunks_are_gone() {
        let data = noise(3 * BLOCK, 5);
        let mut chunker = Chunker::new(&data[..]);
        let mut joined = Vec::new();
        for piece in chunker.by_ref() {
            joined.extend_from_slice(&piece.unwrap().data);
        }
        assert_eq!(joined, data);
        // Every chunk was dropped as it went: their blocks wait to be filled again.
        assert!(!chunker.spare.0.lock().unwrap().is_empty());
    }

    #[test]
    fn batches_are_the_chunks_in_order_about_the_size_asked() {
        let data = noise(3 << 20, 6);
        let single: Vec<(u64, usize)> = Chunker::new(&data[..])
            .map(|p| p.map(|p| (p.offset, p.data.len())).unwrap())
            .collect();
        let mut chunker = Chunker::new(&data[..]);
        let mut batched = Vec::new();
        loop {
            let batch = chunker.next_batch(1 << 20).unwrap();
            if batch.is_empty() {
                break;
            }
            let size: usize = batch.iter().map(|p| p.data.len()).sum();
            let last = batch.last().unwrap().data.len();
            // Filled to the size asked, by less than the chunk that crossed it.
            assert!(size - last < 1 << 20, "{size}");
            batched.extend(batch.iter().map(|p| (p.offset, p.data.len())));
        }
        assert_eq!(batched, single);
        assert_eq!(chunker.finish(), data.len() as u64);
    }

    #[test]
    fn an_empty_stream_has_no_chunks() {
        let mut chunker = Chunker::new(&[][..]);
        assert!(chunker.next().is_none());
        assert_eq!(chunker.finish(), 0);
    }
}
