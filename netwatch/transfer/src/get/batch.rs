//! One span's chunks fetched through the fallback ladder. A mirror other than the one the
//! manifest came from may keep the chunks elsewhere (each put packs its own way), so each
//! mirror is read where its own manifest of the key places them. Chunks that arrive sound
//! are kept in the cache at once, so a try on the next mirror asks only for the rest.

use std::{collections::HashMap, ops::Range, sync::Arc, sync::Mutex};

use tokio::sync::OnceCell;

use super::{
    place::Placer,
    spans::{self, Span},
    Shared,
};
use crate::{
    compress::decode,
    digest::Sha256,
    error::TransferError,
    fallback::{self, Failure, Served},
    manifest::Located,
    ArtifactKey, ChunkCache, ChunkRef, Manifest, MirrorStore, PackId,
};

/// Each mirror's places for the artifact's chunks.
pub struct Places {
    manifest: Arc<Manifest>,
    /// The mirror the manifest came from: its places are the manifest's.
    source: Option<usize>,
    /// The others': read from their own manifests when first needed.
    own: Vec<OnceCell<HashMap<Sha256, Located>>>,
}

impl Places {
    pub fn new(manifest: Arc<Manifest>, source: Option<usize>, mirrors: usize) -> Self {
        Self {
            manifest,
            source,
            own: (0..mirrors).map(|_| OnceCell::new()).collect(),
        }
    }

    /// `chunks` as mirror `m` stores them, and where. A chunk its own manifest does not name
    /// is looked for where the get's manifest places it (a mirror synced from another holds
    /// the same packs).
    async fn on(
        &self,
        m: usize,
        mirror: &MirrorStore,
        chunks: &[ChunkRef],
    ) -> Result<Vec<Located>, Failure> {
        let as_manifest = |c: &ChunkRef| (c.clone(), self.manifest.spot(c));
        if self.source == Some(m) {
            return Ok(chunks.iter().map(as_manifest).collect());
        }
        let key = &self.manifest.key;
        let own = self.own[m]
            .get_or_try_init(|| async move {
                match mirror.get_manifest(key).await {
                    Ok(json) => Ok(match Manifest::from_json(&json, key) {
                        Ok(theirs) => theirs
                            .chunks
                            .iter()
                            .map(|c| (c.id, (c.clone(), theirs.spot(c))))
                            .collect(),
                        Err(error) => {
                            tracing::debug!(mirror = mirror.name(), %error, "its manifest is unreadable: trying the get's places");
                            HashMap::new()
                        }
                    }),
                    Err(error) if error.is_not_found() => Ok(HashMap::new()),
                    Err(error) => Err(Failure::store(error)),
                }
            })
            .await?;
        Ok(chunks
            .iter()
            .map(|c| {
                own.get(&c.id)
                    .map(|(theirs, spot)| {
                        (
                            ChunkRef {
                                offset: c.offset,
                                ..theirs.clone()
                            },
                            *spot,
                        )
                    })
                    .unwrap_or_else(|| as_manifest(c))
            })
            .collect())
    }
}

/// What one mirror gave a batch.
#[derive(Clone, Copy, Default)]
pub struct Moved {
    pub chunks: usize,
    /// On the wire.
    pub bytes: u64,
    /// Of the artifact.
    pub artifact_bytes: u64,
}

/// One span's chunks, to fetch.
pub struct Batch {
    chunks: Vec<ChunkRef>,
    what: String,
}

impl Batch {
    pub fn new(span: Span, index: usize, total: usize, key: &ArtifactKey) -> Self {
        let what = match &span {
            Span::Pack {
                pack,
                range,
                chunks,
            } => format!(
                "span {} of {total} of {key} ({} chunks, bytes {}..{} of pack {pack})",
                index + 1,
                chunks.len(),
                range.start,
                range.end
            ),
            Span::Object(chunk) => format!(
                "span {} of {total} of {key} (chunk {}, bytes {}..{})",
                index + 1,
                chunk.id,
                chunk.offset,
                chunk.offset + u64::from(chunk.size)
            ),
        };
        Self {
            chunks: span.chunks(),
            what,
        }
    }

    /// Fetches every chunk into the cache; what each mirror gave, and how the ladder went.
    pub async fn fetch(
        self,
        places: &Places,
        placer: &Arc<Placer>,
        shared: &Shared<'_>,
    ) -> Result<(Vec<Moved>, Served<()>), TransferError> {
        let Shared {
            mirrors,
            cache,
            options,
            health,
            steps,
            activity,
        } = *shared;
        let moved = Mutex::new(vec![Moved::default(); mirrors.len()]);
        let (chunks, moved_ref) = (&self.chunks, &moved);
        let served = fallback::run(
            options,
            mirrors,
            health,
            steps,
            || self.what,
            |m| async move {
                let pending: Vec<ChunkRef> = chunks
                    .iter()
                    .filter(|c| !placer.has(c.id))
                    .cloned()
                    .collect();
                if pending.is_empty() {
                    return Ok(());
                }
                let located = places.on(m, &mirrors[m], &pending).await?;
                // The cache finds ranges where the get's manifest places them: a range read
                // elsewhere (another mirror's packs) is kept chunk by chunk instead.
                let at_manifests_places = located
                    .iter()
                    .zip(&pending)
                    .all(|((_, spot), chunk)| *spot == places.manifest.spot(chunk));
                let mut bad = 0;
                for span in spans::plan(located, u64::MAX) {
                    let got = {
                        let _busy = activity.begin(m);
                        read(&mirrors[m], span, cache, placer, at_manifests_places).await?
                    };
                    bad += got.bad;
                    if got.bad == 0 {
                        activity.served(m);
                    }
                    let mut moved = moved_ref.lock().expect("never held across a panic");
                    moved[m].chunks += got.sound.chunks;
                    moved[m].bytes += got.sound.bytes;
                    moved[m].artifact_bytes += got.sound.artifact_bytes;
                }
                if bad > 0 {
                    return Err(Failure::Mirror(format!(
                        "mirror `{}`: {bad} of {} chunks failed their checks",
                        mirrors[m].name(),
                        pending.len()
                    )));
                }
                Ok(())
            },
        )
        .await?;
        Ok((
            moved.into_inner().expect("never held across a panic"),
            served,
        ))
    }
}

/// What one request brought: the sound chunks, now in the cache, and how many were not.
struct Got {
    sound: Moved,
    bad: usize,
}

/// Reads one span from `mirror`, keeps it in `cache` and writes its sound chunks into the
/// output: each byte is hashed once, on arrival.
async fn read(
    mirror: &MirrorStore,
    span: Span,
    cache: &ChunkCache,
    placer: &Arc<Placer>,
    keep_as_range: bool,
) -> Result<Got, Failure> {
    let (stored, chunks, start, pack) = match span {
        Span::Pack {
            pack,
            range,
            chunks,
        } => {
            let stored = read_range(mirror, pack, range.clone()).await?;
            (stored, chunks, range.start, Some(pack))
        }
        Span::Object(chunk) => {
            let (stored, as_stored) = mirror
                .get_chunk_as_stored(&chunk)
                .await
                .map_err(Failure::store)?;
            (stored, vec![(as_stored, 0)], 0, None)
        }
    };
    let bytes = stored.len() as u64;
    let (cache, name) = (cache.clone(), mirror.name().to_string());
    // Hashing and decompressing are CPU work: off the async threads.
    let placer = Arc::clone(placer);
    tokio::task::spawn_blocking(move || {
        let mut got = Got {
            sound: Moved {
                bytes,
                ..Moved::default()
            },
            bad: 0,
        };
        let mut sound = Vec::with_capacity(chunks.len());
        for (chunk, at) in chunks {
            let from = (at - start) as usize;
            let body = &stored[from..from + chunk.stored_size as usize];
            match decode(body, &chunk) {
                Ok(data) => {
                    placer.place(chunk.id, &data).map_err(|e| {
                        Failure::Fatal(TransferError::output("writing", "the output")(e))
                    })?;
                    got.sound.chunks += 1;
                    got.sound.artifact_bytes += u64::from(chunk.size);
                    sound.push((chunk.id, data));
                }
                Err(bad_data) => {
                    tracing::warn!(mirror = %name, chunk = %chunk.id, "mirror `{name}` sent bad data: {bad_data}");
                    got.bad += 1;
                }
            }
        }
        // Kept for the next get: the range as one file when every chunk in it checked out
        // and lies where the get's manifest says; else each sound chunk as its own file.
        let keep = |e: crate::CacheError| Failure::Fatal(e.into());
        match pack {
            Some(pack) if got.bad == 0 && keep_as_range => {
                cache.write_run(pack, start, &stored).map_err(keep)?
            }
            _ => {
                for (id, data) in &sound {
                    cache.write(*id, data).map_err(keep)?;
                }
            }
        }
        Ok(got)
    })
    .await
    .expect("checking chunks does not panic")
}

async fn read_range(
    mirror: &MirrorStore,
    pack: PackId,
    range: Range<u64>,
) -> Result<Vec<u8>, Failure> {
    mirror
        .read_pack_range(pack, range)
        .await
        .map_err(Failure::store)
}
