//! How chunks are stored: raw, zstd or gzip, the level chosen from the link's bandwidth and
//! the compressor's measured speed, and decoding that checks the content against its id.

use std::{
    io::{self, Read, Write},
    time::Instant,
};

use serde::{Deserialize, Serialize};

use crate::{chunk::MAX_CHUNK, digest::Digest, manifest::ChunkRef};

/// How a chunk's bytes are stored on a mirror; recorded per chunk in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// As they are: when the link outruns the compressor.
    None,
    Zstd,
    /// For mirrors that require it (`compression = "gzip"`); slower and larger than zstd.
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::None, Encoding::Gzip];

    /// The suffix of the chunk's object name: one id has one object per encoding.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Zstd => ".zst",
            Self::Gzip => ".gz",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }
}

/// What `put` is asked to do about compression (a mirror's `compression` key, or a flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd at the level `choose_level` picks; raw when the link outruns the compressor.
    #[default]
    Auto,
    None,
    Zstd(i32),
    Gzip(u32),
}

/// zstd's default level; used when the link's bandwidth is not known yet. The field notes
/// measured it at 3.14x and 234 MB/s on Rust build output: faster than most WAN links.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The levels `Auto` chooses among: each step costs speed for ratio.
pub const CANDIDATE_LEVELS: [i32; 5] = [1, 3, 6, 12, 19];
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// A compressor level's measured throughput (input bytes per second) and ratio (input over
/// output bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelSpeed {
    pub level: i32,
    pub bytes_per_sec: f64,
    pub ratio: f64,
}

/// The zstd level that moves data fastest over a link of `link_bytes_per_sec`, or `None` to
/// store chunks raw. Compression and sending overlap, so a level moves input at
/// min(compressor speed, link × ratio); raw moves it at the link's speed. Raw therefore wins
/// exactly when the link outruns every level's compressor; on a slow link the best ratio
/// wins. Ties go to the better ratio (fewer bytes stored).
pub fn choose_level(link_bytes_per_sec: f64, levels: &[LevelSpeed]) -> Option<i32> {
    let effective = |l: &LevelSpeed| l.bytes_per_sec.min(link_bytes_per_sec * l.ratio.max(1.0));
    let best = levels
        .iter()
        .filter(|l| l.bytes_per_sec > 0.0 && l.ratio.is_finite())
        .max_by(|a, b| {
            effective(a)
                .total_cmp(&effective(b))
                .then(a.ratio.total_cmp(&b.ratio))
        })?;
    (effective(best) > link_bytes_per_sec).then_some(best.level)
}

/// Measures each level on `sample` (a chunk or two of the file being put), on this CPU.
pub fn measure(sample: &[u8], levels: &[i32]) -> io::Result<Vec<LevelSpeed>> {
    levels
        .iter()
        .map(|&level| {
            let started = Instant::now();
            let compressed = zstd::bulk::compress(sample, level)?;
            let seconds = started.elapsed().as_secs_f64().max(1e-6);
            Ok(LevelSpeed {
                level,
                bytes_per_sec: sample.len() as f64 / seconds,
                ratio: sample.len() as f64 / compressed.len().max(1) as f64,
            })
        })
        .collect()
}

/// `data` stored with `encoding` (`level` applies to zstd and gzip).
pub fn encode(data: &[u8], encoding: Encoding, level: i32) -> io::Result<Vec<u8>> {
    match encoding {
        Encoding::None => Ok(data.to_vec()),
        Encoding::Zstd => zstd::bulk::compress(data, level),
        Encoding::Gzip => {
            let level = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(data)?;
            encoder.finish()
        }
    }
}

/// Why stored bytes did not give the chunk the manifest names.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The body is not the length the manifest records: cut short, or padded.
    #[error("chunk {id}: the mirror sent {got} bytes, the manifest records {expected}")]
    WrongLength { id: Digest, got: u64, expected: u64 },
    /// The bytes do not decode with the recorded encoding.
    #[error("chunk {id}: the stored bytes are not valid {encoding}")]
    Decode {
        id: Digest,
        encoding: &'static str,
        #[source]
        source: io::Error,
    },
    /// Decoded, but to a different size than recorded (also: more than a chunk can hold).
    #[error("chunk {id}: decodes to {got} bytes, the manifest records {expected}")]
    WrongSize { id: Digest, got: u64, expected: u64 },
    /// Decoded, but the content is not what the id names: corrupt or substituted.
    #[error(
        "chunk {id}: the content's {} digest is {got}: corrupt or substituted data",
        got.algorithm().as_str()
    )]
    Corrupt { id: Digest, got: Digest },
}

/// The chunk's content from its stored bytes, checked against the manifest: stored length,
/// decoded size (decoding stops past it, so a hostile body cannot inflate) and digest.
pub fn decode(stored: &[u8], chunk: &ChunkRef) -> Result<Vec<u8>, ChunkError> {
    decode_in_place(stored, chunk).map(std::borrow::Cow::into_owned)
}

/// Like [`decode`], but a chunk stored raw is checked where it lies, not copied.
pub fn decode_in_place<'a>(
    stored: &'a [u8],
    chunk: &ChunkRef,
) -> Result<std::borrow::Cow<'a, [u8]>, ChunkError> {
    use std::borrow::Cow;
    let id = chunk.id;
    if stored.len() as u64 != chunk.stored_size {
        return Err(ChunkError::WrongLength {
            id,
            got: stored.len() as u64,
            expected: chunk.stored_size,
        });
    }
    let expected = u64::from(chunk.size);
    let decode_error = |source| ChunkError::Decode {
        id,
        encoding: chunk.encoding.as_str(),
        source,
    };
    let data: Cow<'a, [u8]> = match chunk.encoding {
        Encoding::None => Cow::Borrowed(stored),
        // The capacity bounds the output: a frame claiming more is an error, not an allocation.
        Encoding::Zstd => {
            Cow::Owned(zstd::bulk::decompress(stored, MAX_CHUNK).map_err(decode_error)?)
        }
        Encoding::Gzip => {
            let mut data = Vec::with_capacity(chunk.size as usize);
            flate2::read::GzDecoder::new(stored)
                .take(MAX_CHUNK as u64 + 1)
                .read_to_end(&mut data)
                .map_err(decode_error)?;
            Cow::Owned(data)
        }
    };
    if data.len() as u64 != expected {
        return Err(ChunkError::WrongSize {
            id,
            got: data.len() as u64,
            expected,
        });
    }
    let got = id.algorithm().digest(&data);
    if got != id {
        return Err(ChunkError::Corrupt { id, got });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    fn speeds() -> Vec<LevelSpeed> {
        // Shaped like the field notes' figures for zstd on build output.
        vec![
            LevelSpeed {
                level: 1,
                bytes_per_sec: 500.0 * MB,
                ratio: 2.8,
            },
            LevelSpeed {
                level: 3,
                bytes_per_sec: 234.0 * MB,
                ratio: 3.1,
            },
            LevelSpeed {
                level: 12,
                bytes_per_sec: 40.0 * MB,
                ratio: 3.6,
            },
            LevelSpeed {
                level: 19,
                bytes_per_sec: 4.0 * MB,
                ratio: 4.0,
            },
        ]
    }

    #[test]
    fn a_link_faster_than_every_compressor_gets_raw_chunks() {
        assert_eq!(choose_level(1000.0 * MB, &speeds()), None);
        assert_eq!(choose_level(600.0 * MB, &speeds()), None);
    }

    #[test]
    fn a_fast_link_gets_the_fastest_level_that_keeps_up() {
        // 1 Gbit/s: level 1 moves 350 MB/s of input (link-bound), level 3 234 (CPU-bound).
        assert_eq!(choose_level(125.0 * MB, &speeds()), Some(1));
        // 50 Mbit/s: level 12 (22.5 MB/s of input) beats 3 (19.6) and 19 (4).
        assert_eq!(choose_level(6.25 * MB, &speeds()), Some(12));
    }

    #[test]
    fn a_slow_link_gets_the_best_ratio() {
        assert_eq!(choose_level(0.5 * MB, &speeds()), Some(19));
    }

    #[test]
    fn no_measurement_means_raw() {
        assert_eq!(choose_level(1.0 * MB, &[]), None);
    }

    fn chunk_ref(data: &[u8], stored: &[u8], encoding: Encoding) -> ChunkRef {
        ChunkRef {
            id: Digest::sha256(data),
            offset: 0,
            size: data.len() as u32,
            encoding,
            stored_size: stored.len() as u64,
            pack: None,
        }
    }

    #[test]
    fn every_encoding_round_trips_and_is_verified() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for encoding in Encoding::ALL {
            let stored = encode(&data, encoding, 3).unwrap();
            let chunk = chunk_ref(&data, &stored, encoding);
            assert_eq!(decode(&stored, &chunk).unwrap(), data, "{encoding:?}");
        }
        let measured = measure(&data, &[1, 3]).unwrap();
        assert!(measured
            .iter()
            .all(|l| l.ratio > 10.0 && l.bytes_per_sec > 0.0));
    }

    #[test]
    fn wrong_bytes_short_bodies_and_bombs_are_refused() {
        let data = vec![7u8; 50_000];
        let stored = encode(&data, Encoding::Zstd, 3).unwrap();
        let chunk = chunk_ref(&data, &stored, Encoding::Zstd);
        assert!(matches!(
            decode(&stored[..stored.len() - 1], &chunk),
            Err(ChunkError::WrongLength { .. })
        ));
        let other = encode(&[8u8; 50_000], Encoding::Zstd, 3).unwrap();
        let mut substituted = chunk.clone();
        substituted.stored_size = other.len() as u64;
        assert!(matches!(
            decode(&other, &substituted),
            Err(ChunkError::Corrupt { .. })
        ));
        let bomb = encode(&vec![0u8; 8 << 20], Encoding::Zstd, 3).unwrap();
        let mut bombed = chunk.clone();
        bombed.stored_size = bomb.len() as u64;
        assert!(matches!(
            decode(&bomb, &bombed),
            Err(ChunkError::Decode { .. })
        ));
        let gzip_bomb = encode(&vec![0u8; 8 << 20], Encoding::Gzip, 6).unwrap();
        let mut bombed = chunk_ref(&data, &gzip_bomb, Encoding::Gzip);
        bombed.stored_size = gzip_bomb.len() as u64;
        assert!(matches!(
            decode(&gzip_bomb, &bombed),
            Err(ChunkError::WrongSize { .. })
        ));
        assert!(matches!(
            decode(
                b"not zstd",
                &ChunkRef {
                    stored_size: 8,
                    ..chunk
                }
            ),
            Err(ChunkError::Decode { .. })
        ));
    }
}
