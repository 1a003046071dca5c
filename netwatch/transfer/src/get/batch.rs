//! One span's chunks fetched through the fallback ladder. A mirror other than the one the
//! manifest came from may keep the chunks elsewhere (each put packs its own way), so each
//! mirror is read where its own manifest of the key places them. Chunks that arrive sound
//! are kept in the cache at once, so a try on the next mirror asks only for the rest.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use tokio::sync::OnceCell;

use super::{
    arrivals::{Arrivals, Checker, Got},
    place::Placer,
    spans::{self, Span},
    stall::Progress,
    Shared,
};
use crate::{
    compress::decode_in_place,
    digest::Digest,
    error::TransferError,
    fallback::{self, Failure, Served},
    manifest::Located,
    ArtifactKey, ChunkCache, ChunkRef, Manifest, MirrorStore,
};

/// Each mirror's places for the artifact's chunks.
pub struct Places {
    manifest: Arc<Manifest>,
    /// The mirror the manifest came from: its places are the manifest's.
    source: Option<usize>,
    /// The others': read from their own manifests when first needed.
    own: Vec<OnceCell<HashMap<Digest, Located>>>,
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
            keep_fetched,
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
                let credit = |sound: &Moved| {
                    let mut moved = moved_ref.lock().expect("never held across a panic");
                    moved[m].chunks += sound.chunks;
                    moved[m].bytes += sound.bytes;
                    moved[m].artifact_bytes += sound.artifact_bytes;
                };
                let mut bad = 0;
                for span in spans::plan(located, u64::MAX) {
                    let got = {
                        let _busy = activity.begin(m);
                        let reading = Reading {
                            cache: keep_fetched.then_some(cache),
                            placer,
                            keep_as_range: at_manifests_places,
                            stall: options.stall,
                            credit: &credit,
                        };
                        read(&mirrors[m], span, &reading).await?
                    };
                    bad += got.bad;
                    if got.bad == 0 {
                        activity.served(m);
                    }
                    credit(&got.sound);
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

/// Where a span's chunks go, and how long a mirror may send nothing.
struct Reading<'a> {
    /// Where sound chunks are kept too; `None` when the output is the cache's copy.
    cache: Option<&'a ChunkCache>,
    placer: &'a Arc<Placer>,
    /// Keep the span in the cache as one range (it lies where the get's manifest says).
    keep_as_range: bool,
    stall: std::time::Duration,
    /// Counts chunks a failed request brought whole and sound (they are in the output).
    credit: &'a (dyn Fn(&Moved) + Sync),
}

/// Reads one span from `mirror`, writes its sound chunks into the output (each byte hashed
/// once) and keeps the span in the cache. A mirror that sends nothing for the stall limit is
/// left for the next.
async fn read(mirror: &MirrorStore, span: Span, reading: &Reading<'_>) -> Result<Got, Failure> {
    let Reading {
        cache,
        placer,
        keep_as_range,
        stall,
        credit,
    } = *reading;
    let stalled = || {
        Failure::Stalled(format!(
            "mirror `{}` sent nothing for {} s",
            mirror.name(),
            stall.as_secs_f64()
        ))
    };
    let (pack, range, chunks) = match span {
        Span::Pack {
            pack,
            range,
            chunks,
        } => (pack, range, chunks),
        Span::Object(chunk) => {
            // One chunk of 64 KiB or so: silence for the whole limit is a stall.
            return tokio::time::timeout(stall, read_object(mirror, chunk, cache, placer))
                .await
                .map_err(|_| stalled())?;
        }
    };
    let start = range.start;
    // Each chunk is checked and placed as soon as its last byte is in, while it is still in
    // the CPU's cache; the whole span is kept only where the cache needs its own copy.
    let mut arrivals = Arrivals::new(start, &chunks, Checker::new(placer, mirror.name()));
    let mut whole = cache.map(|_| Vec::with_capacity((range.end - start) as usize));
    let progress = Progress::new();
    let fetch = mirror.read_pack_range(pack, range, |piece| {
        progress.touch();
        if let Some(whole) = &mut whole {
            whole.extend_from_slice(piece);
        }
        arrivals.take(piece);
    });
    let fetched = tokio::select! {
        fetched = fetch => fetched.map_err(Failure::store),
        () = progress.stalled(stall) => Err(stalled()),
    };
    let Checker {
        got, sound, fatal, ..
    } = arrivals.finish();
    if let Some(fatal) = fatal {
        return Err(fatal);
    }
    if let Err(failure) = fetched {
        // What arrived whole before the failure is checked and in the output: the next
        // mirror is asked only for the rest.
        credit(&got.sound);
        return Err(failure);
    }
    let (cache, placer) = (cache.cloned(), Arc::clone(placer));
    // Writeback and the cache's copy are disk work: off the async threads, which meanwhile
    // receive the other spans.
    tokio::task::spawn_blocking(move || {
        placer.start_writeback();
        let (Some(cache), Some(buffer)) = (cache, whole) else {
            return Ok(got);
        };
        // Kept for the next get: the range as one file when every chunk in it checked out
        // and lies where the get's manifest says; else each sound chunk as its own file.
        let keep = |e: crate::CacheError| Failure::Fatal(e.into());
        if got.bad == 0 && keep_as_range {
            cache.write_run(pack, start, &buffer).map_err(keep)?;
            return Ok(got);
        }
        for index in sound {
            let (chunk, at) = &chunks[index];
            let from = (at - start) as usize;
            let body = &buffer[from..from + chunk.stored_size as usize];
            if let Ok(data) = decode_in_place(body, chunk) {
                cache.write(chunk.id, &data).map_err(keep)?;
            }
        }
        Ok(got)
    })
    .await
    .expect("keeping chunks does not panic")
}

/// A format 1 chunk object: fetched, checked, written into the output and cached decoded.
async fn read_object(
    mirror: &MirrorStore,
    chunk: ChunkRef,
    cache: Option<&ChunkCache>,
    placer: &Arc<Placer>,
) -> Result<Got, Failure> {
    let (stored, as_stored) = mirror
        .get_chunk_as_stored(&chunk)
        .await
        .map_err(Failure::store)?;
    let (cache, placer, name) = (
        cache.cloned(),
        Arc::clone(placer),
        mirror.name().to_string(),
    );
    // Hashing and decompressing are CPU work: off the async threads.
    tokio::task::spawn_blocking(move || {
        let mut checker = Checker::new(&placer, &name);
        checker.check(&as_stored, &stored);
        if let Some(fatal) = checker.fatal {
            return Err(fatal);
        }
        if let (0, Some(cache)) = (checker.got.bad, cache) {
            let data = decode_in_place(&stored, &as_stored).expect("checked just now");
            cache
                .write(as_stored.id, &data)
                .map_err(|e| Failure::Fatal(e.into()))?;
        }
        let mut got = checker.got;
        got.sound.bytes = stored.len() as u64;
        Ok(got)
    })
    .await
    .expect("checking a chunk does not panic")
}
