//! `put`: the file cut into chunks as it is read; the chunks the mirror lacks (its current
//! manifest of the key says which it has: one request) compressed several at once and
//! appended into packs, each uploaded in one request as it fills; the manifest written last,
//! so that no reader ever sees a manifest naming a chunk that is not there yet. Then the
//! bandwidth object, if the mirror lacks it.

mod packer;

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::Path,
    time::Duration,
};

use bytes::Bytes;

use futures::{stream, stream::FuturesUnordered, StreamExt};
use tokio::{sync::mpsc, time::Instant};

use packer::{Packer, Sealed};

use crate::{
    activity::Activity,
    chunk::{Chunker, Piece, MAX_CHUNK},
    compress::{self, choose_level, encode, measure, Compression, Encoding},
    digest::{Algorithm, Digest},
    error::TransferError,
    fallback::{self, Failure, MirrorHealth, Served},
    manifest::{unix_ms_now, Located, DIGEST},
    measure::ensure_bandwidth_object,
    pack::{MAX_PACK_SIZE, MIN_PACK_SIZE},
    ArtifactKey, ChunkRef, Manifest, MirrorStore, PackAt, PackId, Progress, Summary,
    TransferOptions,
};

/// Full packs uploading at once: each is held in memory until it is stored.
const PACKS_IN_FLIGHT: usize = 2;

/// About how many bytes of chunks are handed from the reader to the encoders at a time.
const BATCH_BYTES: usize = 1 << 20;

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
    // What the mirror has already: the chunks its current manifest of this key names (it is
    // written after them, so they are there). One request, not one per chunk.
    let Known {
        chunks: known,
        digest,
    } = known_chunks(key, &shared).await?.named_by(options.digest);

    // Chunking on a blocking thread, a few batches ahead of the encoders, and the whole
    // file's digest on one of its own: the two sequential passes run side by side.
    let concurrency = options.concurrency.max(1);
    let (sender, mut receiver) = mpsc::channel::<io::Result<Vec<Piece>>>(concurrency);
    let reader = tokio::task::spawn_blocking(move || {
        let (to_hasher, for_hasher) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(concurrency);
        let hasher = std::thread::spawn(move || {
            let mut whole = digest.hasher();
            for data in for_hasher.iter().flatten() {
                whole.update(&data);
            }
            whole.finish()
        });
        let mut chunker = Chunker::new(source);
        loop {
            let batch = chunker.next_batch(BATCH_BYTES);
            if let Ok(pieces) = &batch {
                if pieces.is_empty() {
                    break;
                }
                let _ = to_hasher.send(pieces.iter().map(|p| p.data.clone()).collect());
            }
            let failed = batch.is_err();
            if sender.blocking_send(batch).is_err() || failed {
                break;
            }
        }
        drop(to_hasher);
        let checksum = hasher.join().expect("digesting does not panic");
        (checksum, chunker.finish())
    });
    let batches = stream::poll_fn(move |cx| receiver.poll_recv(cx));
    // Batches of chunks digested several at once, in file order, and the new chunks encoded;
    // known ones pass through.
    let known = std::sync::Arc::new(known);
    let mut encoded = batches
        .map(|batch| {
            let known = std::sync::Arc::clone(&known);
            async move {
                let batch = batch.map_err(input_error)?;
                tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .map(|piece| digest_and_encode(piece, digest, &known, (encoding, level)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .expect("digesting and encoding do not panic")
            }
        })
        .buffered(concurrency);

    let pack_size = options.pack_size.clamp(MIN_PACK_SIZE, MAX_PACK_SIZE);
    let mut packer = Packer::default();
    let mut sealed = VecDeque::new();
    let mut uploads = FuturesUnordered::new();
    let mut entries: Vec<Located> = Vec::new();
    // Chunks are taken while no full pack waits; full packs upload while the next one fills,
    // at most `PACKS_IN_FLIGHT` at once: the disk, the CPU and the network work side by side.
    let mut chunks_done = false;
    loop {
        while uploads.len() < PACKS_IN_FLIGHT {
            let Some(full) = sealed.pop_front() else {
                break;
            };
            uploads.push(upload_pack(full, key, &shared));
        }
        if chunks_done && uploads.is_empty() {
            break;
        }
        let room = sealed.is_empty() && !chunks_done;
        tokio::select! {
            Some(uploaded) = uploads.next(), if !uploads.is_empty() => {
                count_pack(&mut summary, mirror, options, uploaded?);
            }
            batch = encoded.next(), if room => {
                let Some(batch) = batch else {
                    chunks_done = true;
                    sealed.extend(packer.seal());
                    continue;
                };
                for placed in batch? {
                    if let Some(size) = take(placed, &mut packer, encoding, &mut summary, &mut entries) {
                        // Already on the mirror: done too, as far as the file's progress goes.
                        options.report(Progress::Chunk {
                            size: u64::from(size),
                            moved: 0,
                            mirror: mirror.name().to_string(),
                        });
                    }
                    // A pack is never larger than its size and one chunk.
                    if packer.len() >= pack_size {
                        sealed.extend(packer.seal());
                    }
                }
            }
        }
    }
    drop(encoded);
    drop(uploads);
    let (checksum, size) = reader.await.expect("chunking does not panic");

    let (chunks, packs) = number_packs(entries);
    let manifest = Manifest {
        key: key.clone(),
        size,
        checksum,
        created_unix_ms: unix_ms_now(),
        chunks,
        packs,
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

/// A chunk's id, and what is stored for it if the mirror lacks it (`known`): its bytes as
/// they are, or encoded.
fn digest_and_encode(
    piece: Piece,
    digest: Algorithm,
    known: &HashMap<Digest, Located>,
    (encoding, level): (Encoding, i32),
) -> Result<Placed, TransferError> {
    let Piece { offset, data } = piece;
    let id = digest.digest(&data);
    if let Some(found) = known.get(&id) {
        return Ok(Placed::Known {
            offset,
            found: found.clone(),
        });
    }
    let size = data.len();
    let stored = match encoding {
        // Stored as they are: the chunk's own buffer, not a copy.
        Encoding::None => data,
        _ => encode(&data, encoding, level)
            .map_err(|source| TransferError::Input {
                path: format!("chunk {id}").into(),
                source,
            })?
            .into(),
    };
    Ok(Placed::New {
        id,
        offset,
        size,
        stored,
    })
}

/// A chunk as the encoders hand it on: known to the mirror already, or new with its stored
/// bytes.
enum Placed {
    Known {
        offset: u64,
        found: Located,
    },
    New {
        id: Digest,
        offset: u64,
        size: usize,
        stored: bytes::Bytes,
    },
}

/// The chunks the mirror has for this put to reuse, and where: those its current manifest
/// of `key` names, else (a new key) those of the manifest written last beside it, in the same
/// directory: `builds/app-1.3.tar` finds `builds/app-1.2.tar`. A manifest is written after
/// its chunks, so they are there. Two requests at most, not one per chunk. A manifest that
/// cannot be read only means its chunks are stored again.
async fn known_chunks(key: &ArtifactKey, shared: &Shared<'_>) -> Result<Known, TransferError> {
    let mirror = &shared.mirrors[0];
    let (base, json) = match read_manifest(key, shared).await? {
        Some(json) => (key.clone(), json),
        None => {
            let directory = key.as_str().rsplit_once('/').map_or("", |(d, _)| d);
            let newest = match shared
                .on_mirror(
                    || format!("the manifests beside {key}"),
                    || async move {
                        mirror
                            .newest_manifest_in(directory)
                            .await
                            .map_err(Failure::store)
                    },
                )
                .await
            {
                Ok(newest) => newest,
                // A mirror that cannot list (some HTTP servers) still takes the put.
                Err(error) => {
                    tracing::debug!(mirror = mirror.name(), %error, "no listing: every chunk is new to this put");
                    None
                }
            };
            let Some(base) = newest.as_deref().and_then(crate::sync_keys::key_of) else {
                return Ok(Known::none());
            };
            match read_manifest(&base, shared).await? {
                Some(json) => (base, json),
                None => return Ok(Known::none()),
            }
        }
    };
    let manifest = match Manifest::from_json(&json, &base) {
        Ok(manifest) => manifest,
        Err(error) => {
            tracing::warn!(mirror = mirror.name(), key = %base, %error, "the mirror's manifest is unreadable: storing every chunk again");
            return Ok(Known::none());
        }
    };
    tracing::debug!(%key, base = %base, chunks = manifest.chunks.len(), "chunks the mirror has");
    Ok(Known {
        chunks: manifest
            .chunks
            .iter()
            .map(|chunk| (chunk.id, (chunk.clone(), manifest.spot(chunk))))
            .collect(),
        digest: manifest.checksum.algorithm(),
    })
}

/// What the mirror already has for a put, and how its chunks are named. A put names its
/// chunks as its base does, so an artifact first put before format 3 (SHA-256) still moves
/// only what changed; one with no base gets the format's own digest, BLAKE3.
struct Known {
    chunks: HashMap<Digest, Located>,
    digest: Algorithm,
}

impl Known {
    fn none() -> Self {
        Self {
            chunks: HashMap::new(),
            digest: DIGEST,
        }
    }

    /// With the algorithm the caller asked for, if any: chunks named by another cannot be
    /// reused, so a change of algorithm stores every chunk again.
    fn named_by(self, asked: Option<Algorithm>) -> Self {
        match asked {
            Some(digest) if digest != self.digest => Self {
                chunks: HashMap::new(),
                digest,
            },
            _ => self,
        }
    }
}

/// The mirror's manifest of `key`, unchecked; `None` if it has none.
async fn read_manifest(
    key: &ArtifactKey,
    shared: &Shared<'_>,
) -> Result<Option<Vec<u8>>, TransferError> {
    let (mirror, activity) = (&shared.mirrors[0], shared.activity);
    shared
        .on_mirror(
            || format!("the current manifest of {key}"),
            || async move {
                let _busy = activity.begin(0);
                match mirror.get_manifest(key).await {
                    Ok(json) => {
                        activity.served(0);
                        Ok(Some(json))
                    }
                    Err(error) if error.is_not_found() => Ok(None),
                    Err(error) => Err(Failure::store(error)),
                }
            },
        )
        .await
}

impl Shared<'_> {
    /// `op` on the mirror, through the retryer.
    async fn on_mirror<T, Fut>(
        &self,
        what: impl FnOnce() -> String,
        op: impl Fn() -> Fut,
    ) -> Result<T, TransferError>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        fallback::run(
            self.options,
            self.mirrors,
            self.health,
            self.steps,
            what,
            |_| op(),
        )
        .await
        .map(|served| served.value)
    }
}

/// The chunks with their packs numbered by first use, and the packs in that order.
fn number_packs(entries: Vec<Located>) -> (Vec<ChunkRef>, Vec<PackId>) {
    let mut packs = Vec::new();
    let mut index = HashMap::new();
    let chunks = entries
        .into_iter()
        .map(|(chunk, spot)| ChunkRef {
            pack: spot.map(|spot| PackAt {
                index: *index.entry(spot.pack).or_insert_with(|| {
                    packs.push(spot.pack);
                    (packs.len() - 1) as u32
                }),
                offset: u32::try_from(spot.offset).expect("packs are at most 1 GiB"),
            }),
            ..chunk
        })
        .collect();
    (chunks, packs)
}

/// Adds an uploaded pack to the summary and the progress.
/// Takes one chunk, in file order, into the manifest's entries: a new one into the pack
/// being filled, a known one (on the mirror, or earlier in this file) by reference. Returns
/// the size of a known one: nothing left to send.
fn take(
    placed: Placed,
    packer: &mut Packer,
    encoding: Encoding,
    summary: &mut Summary,
    entries: &mut Vec<Located>,
) -> Option<u32> {
    let (chunk, spot, new) = match placed {
        Placed::Known {
            offset,
            found: (chunk, spot),
        } => (ChunkRef { offset, ..chunk }, spot, false),
        Placed::New {
            id,
            offset,
            size,
            stored,
        } => match packer.placed(id) {
            // A chunk the file holds twice is stored once.
            Some((chunk, spot)) => (
                ChunkRef {
                    offset,
                    ..chunk.clone()
                },
                Some(*spot),
                false,
            ),
            None => {
                let (chunk, spot) = packer.append(id, offset, size, encoding, stored);
                (chunk, Some(spot), true)
            }
        },
    };
    summary.chunks += 1;
    let known = (!new).then_some(chunk.size);
    if let Some(size) = known {
        summary.bytes_reused += u64::from(size);
    }
    entries.push((chunk, spot));
    known
}

fn count_pack(
    summary: &mut Summary,
    mirror: &MirrorStore,
    options: &TransferOptions,
    uploaded: Uploaded,
) {
    let Uploaded {
        stored,
        artifact_bytes,
        chunks,
        served,
    } = uploaded;
    let tally = summary
        .mirrors
        .entry(mirror.name().to_string())
        .or_default();
    tally.bytes += stored;
    tally.chunks += chunks;
    tally.failures += served.failures.len() as u32;
    summary.bytes_moved += stored;
    summary.chunks_moved += chunks;
    summary.retries += served.calls.saturating_sub(1);
    summary.add_waits(&served.report);
    options.report(Progress::Chunk {
        size: artifact_bytes,
        moved: stored,
        mirror: mirror.name().to_string(),
    });
}

/// A pack stored, and how it went.
struct Uploaded {
    stored: u64,
    artifact_bytes: u64,
    chunks: usize,
    served: Served<()>,
}

/// Uploads one pack, whole, through the retryer.
async fn upload_pack(
    sealed: Sealed,
    key: &ArtifactKey,
    shared: &Shared<'_>,
) -> Result<Uploaded, TransferError> {
    let Shared {
        mirrors,
        options,
        health,
        steps,
        activity,
    } = *shared;
    let mirror = &mirrors[0];
    let Sealed {
        id,
        data,
        artifact_bytes,
        chunks,
    } = sealed;
    let stored = data.content_length() as u64;
    // The same buffers however often it is retried: the payload shares them.
    let payload = data;
    let served = fallback::run(
        options,
        mirrors,
        health,
        steps,
        || format!("uploading pack {id} of {key} ({chunks} chunks)"),
        |_| {
            let payload = payload.clone();
            async move {
                let _busy = activity.begin(0);
                mirror.put_pack(id, payload).await.map_err(Failure::store)?;
                activity.served(0);
                Ok(())
            }
        },
    )
    .await?;
    Ok(Uploaded {
        stored,
        artifact_bytes,
        chunks,
        served,
    })
}
