//! `get`: the manifest from the first mirror that gives a sound one, then only the chunks the
//! local cache lacks, a few ranged reads of their packs at once (`spans`), each chunk checked
//! on arrival and kept in the cache; then the output assembled from the cache (see
//! `assemble`).

mod arrivals;
mod batch;
mod local;
pub mod output;
mod place;
mod spans;
mod stall;

use std::{path::Path, sync::Arc};

use futures::{stream, StreamExt};
use tokio::time::Instant;

use batch::{Batch, Places};
use output::Destination;
use place::Placer;

use crate::{
    activity::Activity,
    error::TransferError,
    fallback::{self, Failure, MirrorHealth, Served},
    manifest::Located,
    ArtifactKey, ChunkCache, Manifest, MirrorStore, Progress, Summary, TransferOptions,
};

/// One artifact to get: `key`, into the file `out`, from `mirrors` (in the order to try
/// them: primary first), through the chunk cache `cache`.
#[derive(Clone, Copy)]
pub struct Fetch<'a> {
    pub key: &'a ArtifactKey,
    pub out: &'a Path,
    pub mirrors: &'a [MirrorStore],
    pub cache: &'a ChunkCache,
}

impl<'a> Fetch<'a> {
    pub fn new(
        key: &'a ArtifactKey,
        out: &'a Path,
        mirrors: &'a [MirrorStore],
        cache: &'a ChunkCache,
    ) -> Self {
        Self {
            key,
            out,
            mirrors,
            cache,
        }
    }
}

/// Fetches `key` from `mirrors` into the file `out`, which appears only whole and checked.
/// Chunks come from `cache` where it has them and go into it as they arrive, so a rerun
/// after any interruption fetches only what is missing. A mirror whose endpoint the agent
/// (`options.state`) says is Down or Degraded is passed over while a healthier one is left.
pub async fn get(fetch: Fetch<'_>, options: &TransferOptions) -> Result<Summary, TransferError> {
    let Fetch {
        key,
        out,
        mirrors,
        cache,
    } = fetch;
    let started = Instant::now();
    let destination = Destination::check(out)?;
    let mut summary = Summary {
        operation: "get",
        key: key.to_string(),
        ..Summary::default()
    };
    for mirror in mirrors {
        summary
            .mirrors
            .entry(mirror.name().to_string())
            .or_default();
    }
    let watch = fallback::endpoint_watch(mirrors, options.state.as_ref()).await;
    let health = MirrorHealth::watching(mirrors, watch);
    let steps = fallback::get_ladder(mirrors.len());
    let activity = Activity::new(mirrors.len());
    let shared = Shared {
        mirrors,
        cache,
        options,
        health: &health,
        steps: &steps,
        activity: &activity,
        keep_fetched: true,
    };

    let (manifest, source) = manifest(key, &shared, &mut summary).await?;
    // Before any chunk is fetched: a manifest claiming more than fits is refused.
    destination.check_room(manifest.size, options.max_output)?;
    summary.artifact_bytes = manifest.size;
    summary.chunks = manifest.chunks.len();

    let manifest = Arc::new(manifest);
    let sink = destination.open(&cache.root().join("tmp"))?;
    let placer = Arc::new(
        Placer::new(sink.file()?, &manifest)
            .map_err(TransferError::output("sizing", sink.name()))?,
    );
    // What the cache has goes into the output first, checked; the rest is fetched.
    let (cache_for, manifest_for, placer_for, name) = (
        cache.clone(),
        Arc::clone(&manifest),
        Arc::clone(&placer),
        sink.name(),
    );
    let missing = options
        .unless_cancelled(async move {
            tokio::task::spawn_blocking(move || {
                local::place_cached(&manifest_for, &cache_for, &placer_for, &name)
            })
            .await
            .expect("reading the cache does not panic")
        })
        .await??;
    // The output, linked into the cache, is the cache's copy of what is fetched: no second
    // write of each byte. Where it cannot be linked, fetched ranges are kept as before.
    let seed = (sink.output_file()).and_then(|file| cache.link_seed(key, &manifest, file));
    let shared = Shared {
        keep_fetched: seed.is_none(),
        ..shared
    };
    let places = Places::new(Arc::clone(&manifest), source, mirrors.len());
    fetch_missing(&manifest, missing, &places, &placer, &shared, &mut summary).await?;
    // Every chunk was checked as it was placed, and the checked manifest's chunks tile the
    // artifact: the output is the artifact.
    assert!(placer.complete(), "every chunk fetched or cached");
    drop(placer);
    let (cache_for, cap) = (cache.clone(), options.cache_max);
    tokio::task::spawn_blocking(move || {
        sink.commit()?;
        if let Some(seed) = seed {
            seed.complete();
        }
        if let Some(cap) = cap {
            cache_for.evict_to(cap);
        }
        Ok::<_, TransferError>(())
    })
    .await
    .expect("committing does not panic")?;
    activity.add_to(&mut summary, mirrors);
    summary.elapsed = started.elapsed();
    summary.finish();
    Ok(summary)
}

/// Fetches `missing` (the chunks of `manifest` the cache lacked, each once) into the
/// output and the cache, a few spans at once.
async fn fetch_missing(
    manifest: &Manifest,
    missing: Vec<Located>,
    places: &Places,
    placer: &Arc<Placer>,
    shared: &Shared<'_>,
    summary: &mut Summary,
) -> Result<(), TransferError> {
    let Shared { options, .. } = *shared;
    let key = &manifest.key;
    let missing_bytes: u64 = missing.iter().map(|(c, _)| u64::from(c.size)).sum();
    summary.bytes_reused = manifest.size.saturating_sub(missing_bytes);
    options.report(Progress::Planned {
        chunks: missing.len(),
        bytes: missing_bytes,
    });
    // Each range in flight is held in memory (up to `spans::MAX_SPAN`) until its chunks are
    // checked: 128 MiB at most with the default 8. Several connections are what a mirror
    // that caps each one needs.
    let in_flight = options.concurrency.max(1);
    let spans = spans::plan(missing, spans::span_limit(missing_bytes, in_flight));
    tracing::debug!(key = %key, chunks = manifest.chunks.len(), requests = spans.len(), "fetching chunks");
    let total = spans.len();
    let mut fetches = stream::iter(spans.into_iter().enumerate())
        .map(|(index, span)| Batch::new(span, index, total, key).fetch(places, placer, shared))
        .buffer_unordered(in_flight);
    while let Some(fetched) = fetches.next().await {
        let (moved, served) = fetched?;
        tally(summary, shared.mirrors, &served);
        for (m, figures) in moved.iter().enumerate().filter(|(_, f)| f.chunks > 0) {
            let entry = summary
                .mirrors
                .entry(shared.mirrors[m].name().to_string())
                .or_default();
            entry.bytes += figures.bytes;
            entry.chunks += figures.chunks;
            summary.bytes_moved += figures.bytes;
            summary.chunks_moved += figures.chunks;
            options.report(Progress::Chunk {
                size: figures.artifact_bytes,
                moved: figures.bytes,
                mirror: shared.mirrors[m].name().to_string(),
            });
        }
    }
    Ok(())
}

/// What every request of one get shares.
struct Shared<'a> {
    mirrors: &'a [MirrorStore],
    cache: &'a ChunkCache,
    options: &'a TransferOptions,
    health: &'a MirrorHealth,
    steps: &'a [usize],
    activity: &'a Activity,
    /// Whether fetched chunks are written into the cache (not when the output is linked
    /// there as a seed).
    keep_fetched: bool,
}

/// Adds one request's failures, retries and waits to the summary.
fn tally<T>(summary: &mut Summary, mirrors: &[MirrorStore], served: &Served<T>) {
    for (m, _) in &served.failures {
        summary
            .mirrors
            .entry(mirrors[*m].name().to_string())
            .or_default()
            .failures += 1;
    }
    summary.retries += served.calls.saturating_sub(1);
    summary.add_waits(&served.report);
}

/// The manifest from the mirrors in order, with the mirror that gave it, else the copy kept
/// from the last get (the "local cache only" step of the ladder). A fetched one is kept for
/// next time.
async fn manifest(
    key: &ArtifactKey,
    shared: &Shared<'_>,
    summary: &mut Summary,
) -> Result<(Manifest, Option<usize>), TransferError> {
    let Shared {
        mirrors,
        cache,
        options,
        activity,
        ..
    } = *shared;
    let fetched = fallback::run(
        options,
        mirrors,
        shared.health,
        shared.steps,
        || format!("the manifest of {key}"),
        |m| async move {
            let json = {
                let _busy = activity.begin(m);
                mirrors[m].get_manifest(key).await.map_err(Failure::store)?
            };
            let manifest = Manifest::from_json(&json, key).map_err(|error| {
                Failure::Mirror(format!(
                    "mirror `{}` sent a bad manifest for {key}: {error}",
                    mirrors[m].name()
                ))
            })?;
            activity.served(m);
            Ok((json, manifest))
        },
    )
    .await;
    match fetched {
        Ok(served) => {
            let (json, manifest) = &served.value;
            let bytes = json.len() as u64;
            cache.write_manifest(key, json)?;
            summary.manifest_from = Some(mirrors[served.mirror].name().to_string());
            summary.manifest_bytes = bytes;
            summary.bytes_moved += bytes;
            tally(summary, mirrors, &served);
            summary
                .mirrors
                .entry(mirrors[served.mirror].name().to_string())
                .or_default()
                .bytes += bytes;
            Ok((manifest.clone(), Some(served.mirror)))
        }
        Err(TransferError::Unavailable { what, why, report }) => {
            let Some(json) = cache.read_manifest(key)? else {
                return Err(TransferError::Unavailable { what, why, report });
            };
            tracing::warn!(%key, reason = %why, "no mirror gave the manifest: using the copy in the local cache");
            summary.manifest_from = Some("local cache".to_string());
            summary.add_waits(&report);
            let manifest = Manifest::from_json(&json, key).map_err(|source| {
                TransferError::CachedManifest {
                    key: key.to_string(),
                    source,
                }
            })?;
            Ok((manifest, None))
        }
        Err(other) => Err(other),
    }
}
