//! `put`: the file cut into chunks as it is read, the chunks the mirror lacks compressed and
//! uploaded several at once, and the manifest written last, so that no reader ever sees a
//! manifest naming a chunk that is not there yet. Then the bandwidth object, if the
//! mirror lacks it.

use std::{
    fs::File,
    io::{self, BufReader},
    os::unix::fs::FileExt,
    path::Path,
    time::Duration,
};

use futures::{stream, StreamExt};
use tokio::{sync::mpsc, time::Instant};

use super::{
    activity::Activity,
    chunk::{Chunker, Piece, MAX_CHUNK},
    compress::{self, choose_level, encode, measure, Compression, Encoding},
    error::TransferError,
    fallback::{self, Failure, MirrorHealth, Served},
    manifest::unix_ms_now,
    measure::ensure_bandwidth_object,
    ArtifactKey, ChunkRef, Manifest, MirrorStore, Progress, Summary, TransferOptions,
};

/// How long writing the bandwidth object may take: past this the link is too slow for a 2 MiB
/// object to be worth it now (under 70 KB/s); the next put tries again.
const PROBE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Uploads `file` as `key` to `mirror`, then the bandwidth object if it lacks it.
pub async fn put(
    file: &Path,
    key: &ArtifactKey,
    mirror: &MirrorStore,
    options: &TransferOptions,
) -> Result<Summary, TransferError> {
    let started = Instant::now();
    let input_error = |source| TransferError::Input {
        path: file.to_path_buf(),
        source,
    };
    let source = File::open(file).map_err(input_error)?;
    let metadata = source.metadata().map_err(input_error)?;
    if !metadata.is_file() {
        return Err(input_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let (encoding, level) = choose_encoding(&source, options).map_err(input_error)?;
    let mut summary = Summary {
        operation: "put",
        key: key.to_string(),
        encoding: Some(match encoding {
            Encoding::None => "none".to_string(),
            other => format!("{}-{level}", other.as_str()),
        }),
        link_bytes_per_sec: options
            .link_bytes_per_sec
            .filter(|_| options.compression == Compression::Auto),
        ..Summary::default()
    };
    summary
        .mirrors
        .entry(mirror.name().to_string())
        .or_default();
    options.report(Progress::Planned {
        chunks: 0,
        bytes: metadata.len(),
    });

    // Chunking and hashing on a blocking thread, a few chunks ahead of the uploads.
    let concurrency = options.concurrency.max(1);
    let (sender, mut receiver) = mpsc::channel::<io::Result<Piece>>(concurrency);
    let reader = tokio::task::spawn_blocking(move || {
        let mut chunker = Chunker::new(BufReader::with_capacity(MAX_CHUNK, source));
        for piece in chunker.by_ref() {
            let failed = piece.is_err();
            if sender.blocking_send(piece).is_err() || failed {
                break;
            }
        }
        chunker.finish()
    });
    let pieces = stream::poll_fn(move |cx| receiver.poll_recv(cx));

    let mirrors = std::slice::from_ref(mirror);
    let health = MirrorHealth::new(1);
    let steps = vec![0; options.policy.max_attempts.max(1) as usize];
    let activity = Activity::new(1);
    let shared = Shared {
        mirrors,
        options,
        health: &health,
        steps: &steps,
        activity: &activity,
    };
    let mut uploads = pieces
        .map(|piece| {
            let shared = &shared;
            async move {
                let piece = piece.map_err(input_error)?;
                upload(piece, key, encoding, level, shared).await
            }
        })
        .buffer_unordered(concurrency);
    let mut chunks = Vec::new();
    while let Some(uploaded) = uploads.next().await {
        let (chunk, found, moved) = uploaded?;
        summary.chunks += 1;
        summary.retries += found.calls.saturating_sub(1);
        summary.network_wait = summary.network_wait.max(found.report.network_wait);
        let tally = summary
            .mirrors
            .entry(mirror.name().to_string())
            .or_default();
        tally.failures += found.failures.len() as u32;
        if let Some(moved) = moved {
            tally.bytes += moved.value;
            tally.chunks += 1;
            tally.failures += moved.failures.len() as u32;
            summary.bytes_moved += moved.value;
            summary.chunks_moved += 1;
            summary.retries += moved.calls.saturating_sub(1);
            summary.network_wait = summary.network_wait.max(moved.report.network_wait);
            options.report(Progress::Chunk {
                size: u64::from(chunk.size),
                moved: moved.value,
                mirror: mirror.name().to_string(),
            });
        } else {
            summary.bytes_reused += u64::from(chunk.size);
            // Already on the mirror: done too, as far as the file's progress goes.
            options.report(Progress::Chunk {
                size: u64::from(chunk.size),
                moved: 0,
                mirror: mirror.name().to_string(),
            });
        }
        chunks.push(chunk);
    }
    drop(uploads);
    let (sha256, size) = reader.await.expect("chunking does not panic");
    chunks.sort_by_key(|c| c.offset);

    let manifest = Manifest {
        key: key.clone(),
        size,
        sha256,
        created_unix_ms: unix_ms_now(),
        chunks,
    };
    let json = manifest.to_json();
    // What this writes, a reader must accept.
    debug_assert!(Manifest::from_json(&json, key).is_ok());
    let bytes = json.len() as u64;
    let written = fallback::run(
        options,
        mirrors,
        &health,
        &steps,
        || format!("writing the manifest of {key}"),
        |_| {
            let json = json.clone();
            let activity = &activity;
            async move {
                let _busy = activity.begin(0);
                mirror
                    .put_manifest(key, json)
                    .await
                    .map_err(Failure::store)?;
                activity.served(0);
                Ok(())
            }
        },
    )
    .await?;
    activity.add_to(&mut summary, mirrors);
    summary.bandwidth_object_write = write_bandwidth_object(mirror, options).await;
    summary.retries += written.calls.saturating_sub(1);
    summary.bytes_moved += bytes;
    summary.manifest_bytes = bytes;
    summary
        .mirrors
        .entry(mirror.name().to_string())
        .or_default()
        .bytes += bytes;
    summary.artifact_bytes = size;
    summary.elapsed = started.elapsed();
    summary.finish();
    Ok(summary)
}

/// Writes the bandwidth object if the mirror lacks it, best effort: the artifact is there
/// already, and a failure here only leaves bandwidth unmeasured. How long it took, if written.
async fn write_bandwidth_object(
    mirror: &MirrorStore,
    options: &TransferOptions,
) -> Option<Duration> {
    let written = tokio::select! {
        () = options.cancel.cancelled() => return None,
        written = tokio::time::timeout(PROBE_WRITE_TIMEOUT, ensure_bandwidth_object(mirror)) => written,
    };
    match written {
        Ok(Ok(took)) => took,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not write the bandwidth object: bandwidth stays unmeasured on this mirror");
            None
        }
        Err(_) => {
            tracing::warn!(
                mirror = mirror.name(),
                "writing the bandwidth object took over {}: left for the next put",
                humantime::format_duration(PROBE_WRITE_TIMEOUT)
            );
            None
        }
    }
}

/// What every chunk of one put shares.
struct Shared<'a> {
    mirrors: &'a [MirrorStore],
    options: &'a TransferOptions,
    health: &'a MirrorHealth,
    steps: &'a [usize],
    activity: &'a Activity,
}

/// The encoding and level for new chunks. Auto with a known link measures the compressor on
/// the file's first bytes and lets `choose_level` decide.
fn choose_encoding(source: &File, options: &TransferOptions) -> io::Result<(Encoding, i32)> {
    Ok(match options.compression {
        Compression::None => (Encoding::None, 0),
        Compression::Zstd(level) => (Encoding::Zstd, level),
        Compression::Gzip(level) => (Encoding::Gzip, i32::try_from(level).unwrap_or(9)),
        Compression::Auto => match options.link_bytes_per_sec {
            None => (Encoding::Zstd, compress::DEFAULT_ZSTD_LEVEL),
            Some(link) => {
                let mut sample = vec![0; MAX_CHUNK];
                let mut filled = 0;
                while filled < sample.len() {
                    match source.read_at(&mut sample[filled..], filled as u64)? {
                        0 => break,
                        n => filled += n,
                    }
                }
                sample.truncate(filled);
                let levels = measure(&sample, &compress::CANDIDATE_LEVELS)?;
                match choose_level(link, &levels) {
                    Some(level) => (Encoding::Zstd, level),
                    None => (Encoding::None, 0),
                }
            }
        },
    })
}

/// One chunk: found on the mirror already (in any encoding), or encoded and uploaded.
async fn upload(
    piece: Piece,
    key: &ArtifactKey,
    encoding: Encoding,
    level: i32,
    shared: &Shared<'_>,
) -> Result<
    (
        ChunkRef,
        Served<Option<(Encoding, u64)>>,
        Option<Served<u64>>,
    ),
    TransferError,
> {
    let id = piece.id;
    let what = || {
        format!(
            "chunk {id} of {key} (bytes {}..{})",
            piece.offset,
            piece.offset + piece.data.len() as u64
        )
    };
    let Shared {
        mirrors,
        options,
        health,
        steps,
        activity,
    } = *shared;
    let mirror = &mirrors[0];
    let found = fallback::run(options, mirrors, health, steps, what, |_| async move {
        mirror
            .find_chunk(id, encoding)
            .await
            .map_err(Failure::store)
    })
    .await?;
    let mut chunk = ChunkRef {
        id,
        offset: piece.offset,
        size: piece.data.len() as u32,
        encoding,
        stored_size: 0,
    };
    if let Some((present, stored_size)) = found.value {
        chunk.encoding = present;
        chunk.stored_size = stored_size;
        return Ok((chunk, found, None));
    }
    let data = piece.data;
    let stored = tokio::task::spawn_blocking(move || encode(&data, encoding, level))
        .await
        .expect("encoding does not panic")
        .map_err(|source| TransferError::Input {
            path: format!("chunk {id}").into(),
            source,
        })?;
    chunk.stored_size = stored.len() as u64;
    let stored = &stored;
    let moved = fallback::run(
        options,
        mirrors,
        health,
        steps,
        || format!("uploading chunk {id} of {key}"),
        |_| async move {
            let _busy = activity.begin(0);
            mirror
                .put_chunk(id, encoding, stored.clone())
                .await
                .map_err(Failure::store)?;
            activity.served(0);
            Ok(stored.len() as u64)
        },
    )
    .await?;
    Ok((chunk, found, Some(moved)))
}
