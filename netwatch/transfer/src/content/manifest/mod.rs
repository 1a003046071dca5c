//! The manifest: what an artifact is made of (its chunks in order, their sizes and stored
//! encodings, the whole file's digest) and when it was written. Written to a mirror after
//! every chunk it names, so a manifest a reader can see names chunks that are there; checked
//! on the way in, so a hostile or broken mirror cannot make a reader write outside its paths,
//! allocate without bound, or assemble a file other than the one described.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod chunks;

use serde::{Deserialize, Serialize};

use chunks::ChunkList;

use super::{
    chunk::{self, MAX_CHUNK},
    compress::Encoding,
    digest::{Algorithm, Digest},
    key::ArtifactKey,
    pack::{PackId, PackSpot, MAX_PACK_OFFSET},
};

/// The format this version writes: 3, chunks in packs, named by BLAKE3 digests. It reads 3,
/// 2 (the same, named by SHA-256 digests) and 1 (every chunk its own object, SHA-256) and
/// refuses any other: a newer writer may have changed what a field means.
pub const FORMAT_VERSION: u32 = 3;
/// How the chunks and the whole file of the format written are digested.
pub const DIGEST: Algorithm = Algorithm::Blake3;
/// The oldest format this version reads.
pub const OLDEST_FORMAT: u32 = 1;
/// No manifest is read past this size: about 4 million chunks, a 256 GB artifact at the
/// average chunk size.
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;
/// Nor with more chunks than this. Each takes 72 bytes once read (the JSON's own text is
/// never held per chunk), so a manifest costs at most its bytes and 288 MiB.
pub const MAX_CHUNKS: usize = 4 << 20;
/// Nor with more packs than this: a 256 GB artifact in packs of the smallest size.
pub const MAX_PACKS: usize = 256 << 10;
/// What a chunk of at most `MAX_CHUNK` bytes may take stored: zstd and gzip add at most a few
/// hundred bytes to data they cannot compress.
pub const MAX_STORED_CHUNK: u64 = MAX_CHUNK as u64 + 64 * 1024;

/// The latest creation time a manifest may give: the end of year 9999, as far as RFC 3339
/// (the `created` field) goes.
pub const MAX_CREATED_UNIX_MS: u64 = 253_402_300_799_999;

/// A checked manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub key: ArtifactKey,
    /// The artifact's size in bytes.
    pub size: u64,
    /// The digest of the whole artifact: BLAKE3 (format 3) or SHA-256 (formats 1 and 2), as
    /// its chunks' ids are.
    pub checksum: Digest,
    /// When `put` wrote it (milliseconds since the Unix epoch): the newest wins in `sync`.
    pub created_unix_ms: u64,
    pub chunks: Vec<ChunkRef>,
    /// The packs the chunks lie in; a chunk's `pack` indexes this list.
    pub packs: Vec<PackId>,
}

/// One chunk of an artifact, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: Digest,
    pub offset: u64,
    /// The chunk's size, decoded.
    pub size: u32,
    /// How it is stored, which also names its object (`chunks/aa/ID.zst`).
    pub encoding: Encoding,
    /// Its stored size: the body a mirror must return.
    pub stored_size: u64,
    /// Where it lies in a pack; `None` for a chunk stored as its own object (format 1, or a
    /// chunk a format 1 put left that a later put reused).
    pub pack: Option<PackAt>,
}

/// A chunk, and where its stored form lies: a pack, or (`None`) its own object.
pub type Located = (ChunkRef, Option<PackSpot>);

/// A chunk's place in one of its manifest's packs (u32s: a pack is at most 1 GiB, and
/// a chunk read takes 72 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackAt {
    /// Into [`Manifest::packs`].
    pub index: u32,
    /// The byte its stored form starts at.
    pub offset: u32,
}

/// The JSON form, with every field as written, before any check.
#[derive(Serialize, Deserialize)]
struct Wire<C> {
    format: u32,
    key: String,
    size: u64,
    /// Formats 1 and 2: the whole file's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// Format 3: its BLAKE3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
    /// RFC 3339, for people; `created_unix_ms` is what programs compare.
    created: String,
    created_unix_ms: u64,
    chunker: Chunker,
    /// Format 2: the packs' ids, in the order chunks index them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    packs: Vec<String>,
    /// Written as a list of `WireChunk`; read into a `ChunkList`, checked one by one.
    chunks: C,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Chunker {
    algorithm: String,
    min_size: u64,
    avg_size: u64,
    max_size: u64,
}

/// A chunk as written (read by `chunks::ChunkList`).
#[derive(Serialize)]
struct WireChunk {
    id: String,
    offset: u64,
    size: u64,
    encoding: Encoding,
    stored_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pack_offset: Option<u64>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not a manifest's fields.
    #[error("not a netwatch manifest: {0}")]
    Json(#[source] serde_json::Error),
    /// Larger than any manifest netwatch writes.
    #[error("{size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")]
    TooLarge { size: u64 },
    /// Another format version.
    #[error(
        "format {found}, but this netwatch reads format {FORMAT_VERSION}: {}",
        if *found > FORMAT_VERSION { "upgrade netwatch" } else { "put the artifact again" }
    )]
    Format { found: u32 },
    /// The key inside is not valid, or not the one asked for (a mirror answering for another
    /// artifact).
    #[error("it names key `{found}`, not `{expected}`")]
    WrongKey { found: String, expected: String },
    /// The whole-file digest is missing, or not one in hex.
    #[error("its {field} is invalid: {source}")]
    Digest {
        field: &'static str,
        #[source]
        source: super::digest::DigestError,
    },
    /// Chunks cut another way, which this version cannot use for a delta.
    #[error("its chunks were cut by {found}, not {ALGORITHM} with 16/64/256 KiB", ALGORITHM = chunk::ALGORITHM)]
    Chunker { found: String },
    /// A chunk entry is wrong; the message names it by position.
    #[error("chunk {index}: {problem}")]
    Chunk { index: usize, problem: String },
    /// A creation time RFC 3339 cannot write (found by fuzzing: writing such a manifest
    /// again, as `sync` does, panicked).
    #[error("its created_unix_ms {found} is after the year 9999")]
    Created { found: u64 },
    /// More chunks than any artifact netwatch writes.
    #[error("more than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    /// A pack id that is not one, or more packs than any artifact netwatch writes.
    #[error("pack {index}: {problem}")]
    Pack { index: usize, problem: String },
    /// The chunks do not add up to the artifact's size.
    #[error("its chunks add up to {sum} bytes, but it gives the artifact's size as {size}")]
    SizeMismatch { sum: u64, size: u64 },
}

impl Manifest {
    /// Reads and checks a manifest fetched for `expected`.
    pub fn from_json(bytes: &[u8], expected: &ArtifactKey) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        let wire: Wire<ChunkList> = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&wire.format) {
            return Err(ManifestError::Format { found: wire.format });
        }
        if wire.key != expected.as_str() {
            return Err(ManifestError::WrongKey {
                found: wire.key.chars().take(200).collect(),
                expected: expected.to_string(),
            });
        }
        if wire.chunker != chunker() {
            return Err(ManifestError::Chunker {
                found: format!(
                    "{} with {}/{}/{} bytes",
                    wire.chunker.algorithm,
                    wire.chunker.min_size,
                    wire.chunker.avg_size,
                    wire.chunker.max_size
                ),
            });
        }
        if wire.created_unix_ms > MAX_CREATED_UNIX_MS {
            return Err(ManifestError::Created {
                found: wire.created_unix_ms,
            });
        }
        let (algorithm, field, text) = if wire.format >= 3 {
            (Algorithm::Blake3, "blake3", wire.blake3)
        } else {
            (Algorithm::Sha256, "sha256", wire.sha256)
        };
        let checksum = Digest::parse(algorithm, text.as_deref().unwrap_or_default())
            .map_err(|source| ManifestError::Digest { field, source })?;
        let ChunkList {
            mut chunks,
            problem,
        } = wire.chunks;
        if let Some(problem) = problem {
            return Err(problem);
        }
        // The list was read before the format was known: its ids are made as the file's is.
        for chunk in &mut chunks {
            chunk.id = chunk.id.made_by(algorithm);
        }
        let packs = packs(&wire.packs, &chunks, wire.format)?;
        let offset = chunks.last().map_or(0, |c| c.offset + u64::from(c.size));
        if offset != wire.size {
            return Err(ManifestError::SizeMismatch {
                sum: offset,
                size: wire.size,
            });
        }
        Ok(Self {
            key: expected.clone(),
            size: wire.size,
            checksum,
            created_unix_ms: wire.created_unix_ms,
            chunks,
            packs,
        })
    }

    /// Where `chunk` (one of this manifest's) lies, if in a pack.
    pub fn spot(&self, chunk: &ChunkRef) -> Option<PackSpot> {
        let at = chunk.pack?;
        Some(PackSpot {
            pack: *self.packs.get(at.index as usize)?,
            offset: u64::from(at.offset),
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A manifest read in format 1 or 2 and written again (by `sync`) stays SHA-256: its
        // ids name what the mirrors hold.
        let blake3 = self.checksum.algorithm() == Algorithm::Blake3;
        let wire = Wire::<Vec<WireChunk>> {
            format: if blake3 { FORMAT_VERSION } else { 2 },
            key: self.key.to_string(),
            size: self.size,
            sha256: (!blake3).then(|| self.checksum.to_hex()),
            blake3: blake3.then(|| self.checksum.to_hex()),
            created: humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_millis(self.created_unix_ms),
            )
            .to_string(),
            created_unix_ms: self.created_unix_ms,
            chunker: chunker(),
            packs: self.packs.iter().map(PackId::to_string).collect(),
            chunks: self
                .chunks
                .iter()
                .map(|c| WireChunk {
                    id: c.id.to_hex(),
                    offset: c.offset,
                    size: u64::from(c.size),
                    encoding: c.encoding,
                    stored_size: c.stored_size,
                    pack: c.pack.map(|p| p.index),
                    pack_offset: c.pack.map(|p| u64::from(p.offset)),
                })
                .collect(),
        };
        // Compact: a manifest is moved with every get, ~130 bytes a chunk.
        let mut json = serde_json::to_vec(&wire).expect("a manifest always serialises");
        json.push(b'\n');
        json
    }
}

/// The pack list, checked: ids that parse, none twice, and every chunk's pack in the list
/// with its stored bytes inside a pack's possible size. Format 1 has none.
fn packs(wire: &[String], chunks: &[ChunkRef], format: u32) -> Result<Vec<PackId>, ManifestError> {
    if format < 2 && !wire.is_empty() {
        return Err(ManifestError::Pack {
            index: 0,
            problem: format!("format {format} has no packs"),
        });
    }
    if wire.len() > MAX_PACKS {
        return Err(ManifestError::Pack {
            index: MAX_PACKS,
            problem: format!("more than {MAX_PACKS} packs"),
        });
    }
    let mut packs = Vec::with_capacity(wire.len());
    let mut seen = std::collections::HashSet::with_capacity(wire.len());
    for (index, text) in wire.iter().enumerate() {
        let id = PackId::parse(text).map_err(|e| ManifestError::Pack {
            index,
            problem: e.to_string(),
        })?;
        if !seen.insert(id) {
            return Err(ManifestError::Pack {
                index,
                problem: format!("{id} is listed twice"),
            });
        }
        packs.push(id);
    }
    for (index, chunk) in chunks.iter().enumerate() {
        let Some(at) = chunk.pack else { continue };
        let problem = if format < 2 {
            format!("format {format} has no packs")
        } else if at.index as usize >= packs.len() {
            format!(
                "pack {} is not in the list of {} packs",
                at.index,
                packs.len()
            )
        } else if u64::from(at.offset) + chunk.stored_size > MAX_PACK_OFFSET + MAX_STORED_CHUNK {
            format!("pack offset {} is past any pack's end", at.offset)
        } else {
            continue;
        };
        return Err(ManifestError::Chunk { index, problem });
    }
    Ok(packs)
}

fn chunker() -> Chunker {
    Chunker {
        algorithm: chunk::ALGORITHM.to_string(),
        min_size: chunk::MIN_CHUNK as u64,
        avg_size: chunk::AVG_CHUNK as u64,
        max_size: MAX_CHUNK as u64,
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ArtifactKey {
        "builds/app.tar".parse().unwrap()
    }

    fn manifest() -> Manifest {
        let (a, b) = (b"a".repeat(20_000), b"b".repeat(30_000));
        let whole = [a.clone(), b.clone()].concat();
        Manifest {
            key: key(),
            size: 50_000,
            checksum: Digest::blake3(&whole),
            created_unix_ms: 1_700_000_000_123,
            chunks: vec![
                ChunkRef {
                    id: Digest::blake3(&a),
                    offset: 0,
                    size: 20_000,
                    encoding: Encoding::Zstd,
                    stored_size: 30,
                    pack: Some(PackAt {
                        index: 0,
                        offset: 0,
                    }),
                },
                ChunkRef {
                    id: Digest::blake3(&b),
                    offset: 20_000,
                    size: 30_000,
                    encoding: Encoding::None,
                    stored_size: 30_000,
                    pack: None,
                },
            ],
            packs: vec![PackId::parse("0123456789abcdef0123456789abcdef").unwrap()],
        }
    }

    #[test]
    fn a_manifest_round_trips_through_json() {
        let json = manifest().to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.contains("\"created\":\"2023-11-14T22:13:20.123Z\""),
            "{text}"
        );
        assert!(text.contains("\"encoding\":\"zstd\""), "{text}");
        assert_eq!(Manifest::from_json(&json, &key()).unwrap(), manifest());
    }

    /// The manifest's JSON with `edit` applied to it as a tree.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut tree: serde_json::Value = serde_json::from_slice(&manifest().to_json()).unwrap();
        edit(&mut tree);
        serde_json::to_vec(&tree).unwrap()
    }

    fn refused(json: &[u8]) -> String {
        Manifest::from_json(json, &key()).unwrap_err().to_string()
    }

    #[test]
    fn a_creation_time_after_the_year_9999_is_refused() {
        // Found by `cargo xtask fuzz manifest`: accepted, it panicked when written again.
        let json = edited(|m| m["created_unix_ms"] = 99_992_000_947_355_264u64.into());
        assert_eq!(
            refused(&json),
            "its created_unix_ms 99992000947355264 is after the year 9999"
        );
        let last = edited(|m| m["created_unix_ms"] = MAX_CREATED_UNIX_MS.into());
        let manifest = Manifest::from_json(&last, &key()).unwrap();
        assert_eq!(
            Manifest::from_json(&manifest.to_json(), &key()).unwrap(),
            manifest
        );
    }

    #[test]
    fn a_chunk_read_takes_72_bytes_as_the_docs_say() {
        assert!(std::mem::size_of::<ChunkRef>() <= 72);
    }

    /// `m` as format 1 or 2 gives it: the whole file's digest under `sha256`.
    fn as_format(m: &mut serde_json::Value, format: u32) {
        m["format"] = format.into();
        let object = m.as_object_mut().unwrap();
        let digest = object.remove("blake3").unwrap();
        object.insert("sha256".into(), digest);
    }

    #[test]
    fn formats_1_and_2_are_sha_256_and_format_3_is_blake3() {
        let m = manifest();
        assert_eq!(m.checksum.algorithm(), Algorithm::Blake3);
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(
            text.contains("\"format\":3") && text.contains("\"blake3\":"),
            "{text}"
        );
        let old = Manifest::from_json(&edited(|m| as_format(m, 2)), &key()).unwrap();
        assert!(old
            .chunks
            .iter()
            .all(|c| c.id.algorithm() == Algorithm::Sha256));
        assert_eq!(old.checksum.algorithm(), Algorithm::Sha256);
        // Written again (as sync does), it stays format 2: its ids are SHA-256 digests.
        let again = String::from_utf8(old.to_json()).unwrap();
        assert!(
            again.contains("\"format\":2") && again.contains("\"sha256\":"),
            "{again}"
        );
        assert_eq!(Manifest::from_json(again.as_bytes(), &key()).unwrap(), old);
        // Each format's digest field, and no other, is read.
        let missing = edited(|m| as_format(m, 3));
        assert_eq!(
            refused(&missing),
            "its blake3 is invalid: `` is not a digest: expected 64 lowercase hex digits"
        );
    }

    #[test]
    fn a_format_1_manifest_still_reads_and_its_chunks_are_objects() {
        let json = edited(|m| {
            as_format(m, 1);
            m.as_object_mut().unwrap().remove("packs");
            let first = m["chunks"][0].as_object_mut().unwrap();
            first.remove("pack");
            first.remove("pack_offset");
        });
        let old = Manifest::from_json(&json, &key()).unwrap();
        assert!(old.packs.is_empty());
        assert!(old
            .chunks
            .iter()
            .all(|c| c.pack.is_none() && old.spot(c).is_none()));
        let with_pack = edited(|m| as_format(m, 1));
        assert!(refused(&with_pack).contains("format 1 has no packs"));
    }

    #[test]
    fn pack_lists_and_places_are_checked() {
        let m = manifest();
        let spot = m.spot(&m.chunks[0]).unwrap();
        assert_eq!((spot.pack, spot.offset), (m.packs[0], 0));
        let bad_id = edited(|m| m["packs"][0] = "../../etc".into());
        assert!(refused(&bad_id).starts_with("pack 0: `../../etc` is not a pack id"));
        let missing = edited(|m| m["chunks"][0]["pack"] = 1.into());
        assert!(refused(&missing).contains("chunk 0: pack 1 is not in the list of 1 packs"));
        let far = edited(|m| m["chunks"][0]["pack_offset"] = (1u64 << 40).into());
        assert!(refused(&far).contains("past any pack's end"));
        let half = edited(|m| {
            m["chunks"][0]
                .as_object_mut()
                .unwrap()
                .remove("pack_offset");
        });
        assert!(refused(&half).contains("only one of pack and pack_offset"));
        let twice = edited(|m| {
            let id = m["packs"][0].clone();
            m["packs"].as_array_mut().unwrap().push(id);
        });
        assert!(refused(&twice).contains("is listed twice"));
    }

    #[test]
    fn chunk_ids_that_are_not_digests_are_refused() {
        for id in ["../../../etc/passwd", "ab", "/abs", &"A".repeat(64)] {
            let json = edited(|m| m["chunks"][1]["id"] = id.into());
            let message = refused(&json);
            assert!(
                message.starts_with("chunk 1: `") && message.contains("is not a digest"),
                "{message}"
            );
        }
    }

    #[test]
    fn gaps_overlaps_and_wrong_totals_are_refused() {
        let gap = edited(|m| m["chunks"][1]["offset"] = 20_001.into());
        assert!(refused(&gap).contains("chunk 1: starts at byte 20001, so it leaves a gap"));
        let overlap = edited(|m| m["chunks"][1]["offset"] = 19_999.into());
        assert!(refused(&overlap).contains("so it overlaps the previous chunk"));
        let total = edited(|m| m["size"] = 50_001.into());
        assert_eq!(
            refused(&total),
            "its chunks add up to 50000 bytes, but it gives the artifact's size as 50001"
        );
        let huge = edited(|m| {
            m["chunks"][1]["size"] = (1u64 << 40).into();
            m["size"] = (20_000 + (1u64 << 40)).into();
        });
        assert!(refused(&huge).contains("chunk 1: size 1099511627776 is outside"));
        let stored = edited(|m| m["chunks"][0]["stored_size"] = 0.into());
        assert!(refused(&stored).contains("chunk 0: stored size 0 is outside"));
    }

    #[test]
    fn another_key_format_or_chunker_is_refused() {
        let other = edited(|m| m["key"] = "builds/other.tar".into());
        assert_eq!(
            refused(&other),
            "it names key `builds/other.tar`, not `builds/app.tar`"
        );
        let newer = edited(|m| m["format"] = 4.into());
        assert!(refused(&newer).contains("upgrade netwatch"));
        let chunker = edited(|m| m["chunker"]["avg_size"] = 8192.into());
        assert!(refused(&chunker).contains("cut by fastcdc-2020 with 16384/8192/262144"));
        let encoding = edited(|m| m["chunks"][0]["encoding"] = "lz4".into());
        assert!(refused(&encoding).starts_with("not a netwatch manifest: unknown variant `lz4`"));
        assert!(refused(b"<html>").starts_with("not a netwatch manifest"));
    }
}
