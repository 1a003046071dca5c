//! Reading a manifest's chunk list one entry at a time: each is checked and kept in its
//! compact form (64 bytes) as it is read, so a large manifest never holds its chunks twice,
//! and a list longer than `MAX_CHUNKS` is refused at the entry that passes the cap.

use std::{borrow::Cow, fmt};

use serde::{
    de::{IgnoredAny, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::{ChunkRef, ManifestError, PackAt, MAX_CHUNKS, MAX_STORED_CHUNK};
use crate::{
    chunk::MAX_CHUNK,
    compress::Encoding,
    digest::{Algorithm, Digest},
};

/// The chunks read so far, and the first problem found (the rest of the list is then only
/// skipped), reported after the manifest's other fields are checked.
pub struct ChunkList {
    pub chunks: Vec<ChunkRef>,
    pub problem: Option<ManifestError>,
}

/// One entry as written, its id borrowed from the JSON where it can be.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    offset: u64,
    size: u64,
    encoding: Encoding,
    stored_size: u64,
    /// Format 2: the index of its pack in the manifest's list, and where in it.
    #[serde(default)]
    pack: Option<u32>,
    #[serde(default)]
    pack_offset: Option<u64>,
}

impl<'de> Deserialize<'de> for ChunkList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ChunkList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of chunks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkList, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(MAX_CHUNKS);
        let mut list = ChunkList {
            chunks: Vec::with_capacity(hint),
            problem: None,
        };
        let mut offset = 0u64;
        while list.problem.is_none() {
            let Some(entry) = seq.next_element::<Entry>()? else {
                return Ok(list);
            };
            let index = list.chunks.len();
            if index == MAX_CHUNKS {
                list.problem = Some(ManifestError::TooManyChunks);
                break;
            }
            match check(entry, offset) {
                Ok(chunk) => {
                    offset = offset.saturating_add(u64::from(chunk.size));
                    list.chunks.push(chunk);
                }
                Err(problem) => list.problem = Some(ManifestError::Chunk { index, problem }),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(list)
    }
}

/// One entry, which must start where the previous chunk ended.
fn check(entry: Entry, offset: u64) -> Result<ChunkRef, String> {
    // Relabelled once the manifest's format says which algorithm made the ids.
    let id = Digest::parse(Algorithm::Sha256, &entry.id).map_err(|e| e.to_string())?;
    if entry.offset != offset {
        let what = if entry.offset < offset {
            "overlaps"
        } else {
            "leaves a gap after"
        };
        return Err(format!(
            "starts at byte {}, so it {what} the previous chunk, which ends at {offset}",
            entry.offset
        ));
    }
    if entry.size == 0 || entry.size > MAX_CHUNK as u64 {
        return Err(format!(
            "size {} is outside 1..={MAX_CHUNK} bytes",
            entry.size
        ));
    }
    if entry.stored_size == 0 || entry.stored_size > MAX_STORED_CHUNK {
        return Err(format!(
            "stored size {} is outside 1..={MAX_STORED_CHUNK} bytes",
            entry.stored_size
        ));
    }
    let pack = match (entry.pack, entry.pack_offset) {
        (Some(index), Some(offset)) => Some(PackAt {
            index,
            offset: u32::try_from(offset)
                .map_err(|_| format!("pack offset {offset} is past any pack's end"))?,
        }),
        (None, None) => None,
        _ => return Err("has only one of pack and pack_offset".to_string()),
    };
    Ok(ChunkRef {
        id,
        offset: entry.offset,
        size: entry.size as u32,
        encoding: entry.encoding,
        stored_size: entry.stored_size,
        pack,
    })
}
