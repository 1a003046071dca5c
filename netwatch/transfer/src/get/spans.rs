//! Which range requests a get makes: the chunks it lacks, by where they lie, with neighbours
//! in one pack merged into one ranged read, so a cold get of a packed artifact is a request
//! per span, not per chunk.

use std::ops::Range;

use crate::{manifest::Located, ChunkRef, PackId};

/// Neighbouring chunks closer than this are read in one range, the bytes between included:
/// a request costs more than this many bytes on any link worth using.
pub const MERGE_GAP: u64 = 256 << 10;
/// The most one range asks for: a span is held in memory until its chunks are checked.
pub const MAX_SPAN: u64 = 16 << 20;
/// The least: below this, spans stop shrinking to spread a small artifact over the requests.
pub const MIN_SPAN: u64 = 1 << 20;

/// One request's worth of chunks: a range of one pack, or one chunk stored as its own
/// object (format 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    Pack {
        pack: PackId,
        range: Range<u64>,
        /// The chunks, each with its offset in the pack.
        chunks: Vec<(ChunkRef, u64)>,
    },
    Object(ChunkRef),
}

impl Span {
    pub fn chunks(&self) -> Vec<ChunkRef> {
        match self {
            Self::Pack { chunks, .. } => chunks.iter().map(|(c, _)| c.clone()).collect(),
            Self::Object(chunk) => vec![chunk.clone()],
        }
    }
}

/// The span size that gives `in_flight` requests several spans each, within the bounds.
pub fn span_limit(missing_bytes: u64, in_flight: usize) -> u64 {
    (missing_bytes / (4 * in_flight.max(1) as u64)).clamp(MIN_SPAN, MAX_SPAN)
}

/// Groups `chunks`, each with its place (`None`: its own object), into spans of at most
/// `limit` bytes (a single chunk may exceed it).
pub fn plan(chunks: Vec<Located>, limit: u64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut packed = Vec::new();
    for (chunk, spot) in chunks {
        match spot {
            Some(spot) => packed.push((spot, chunk)),
            None => spans.push(Span::Object(chunk)),
        }
    }
    packed.sort_by_key(|(spot, _)| (spot.pack, spot.offset));
    let mut current: Option<Span> = None;
    for (spot, chunk) in packed {
        let end = spot.offset + chunk.stored_size;
        if let Some(Span::Pack {
            pack,
            range,
            chunks,
        }) = &mut current
        {
            let joins = *pack == spot.pack
                && spot.offset >= range.end
                && spot.offset - range.end <= MERGE_GAP
                && end - range.start <= limit;
            if joins {
                range.end = end;
                chunks.push((chunk, spot.offset));
                continue;
            }
        }
        spans.extend(current.replace(Span::Pack {
            pack: spot.pack,
            range: spot.offset..end,
            chunks: vec![(chunk, spot.offset)],
        }));
    }
    spans.extend(current);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Digest, Encoding, PackSpot};

    fn chunk(n: u8, stored: u64) -> ChunkRef {
        ChunkRef {
            id: Digest::sha256(&[n]),
            offset: 0,
            size: 1,
            encoding: Encoding::None,
            stored_size: stored,
            pack: None,
        }
    }

    #[test]
    fn neighbours_merge_until_the_limit_and_gaps_or_other_packs_split() {
        let (a, b) = (PackId::new(), PackId::new());
        let at = |pack, offset| Some(PackSpot { pack, offset });
        let spans = plan(
            vec![
                (chunk(3, 100), at(a, 300)),
                (chunk(1, 100), at(a, 0)),
                (chunk(2, 100), at(a, 100)),
                // Far past the gap: a new span.
                (chunk(4, 100), at(a, 300 + 100 + MERGE_GAP + 1)),
                (chunk(5, 100), at(b, 0)),
                (chunk(6, 100), None),
            ],
            1_000,
        );
        let ranges: Vec<_> = spans
            .iter()
            .map(|s| match s {
                Span::Pack {
                    pack,
                    range,
                    chunks,
                } => (Some(*pack), range.clone(), chunks.len()),
                Span::Object(_) => (None, 0..0, 1),
            })
            .collect();
        let far = 400 + MERGE_GAP + 1;
        let mut expected = vec![
            (None, 0..0, 1),
            (Some(a), 0..400, 3),
            (Some(a), far..far + 100, 1),
            (Some(b), 0..100, 1),
        ];
        expected[1..].sort_by_key(|(p, r, _)| (*p, r.start));
        assert_eq!(ranges, expected);
        // The limit splits a run of neighbours.
        let run: Vec<_> = (0..10)
            .map(|i| (chunk(i, 100), at(a, u64::from(i) * 100)))
            .collect();
        assert_eq!(plan(run, 300).len(), 4);
    }

    #[test]
    fn span_limits_stay_within_their_bounds() {
        assert_eq!(span_limit(512 << 20, 4), MAX_SPAN);
        assert_eq!(span_limit(32 << 20, 8), MIN_SPAN);
        assert_eq!(span_limit(0, 0), MIN_SPAN);
    }
}
