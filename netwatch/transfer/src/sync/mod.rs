//! `sync`: copies the chunks and manifests each destination mirror lacks from the sources, so
//! that every destination ends with the newest version of every key (last write wins by
//! `created_unix_ms`; `sync_plan` decides). Each chunk is checked (decoded, its digest
//! against its id) before it is written, and written as it was stored, without recompressing;
//! a destination's manifest is written after all its chunks, so no reader sees a manifest
//! naming a missing chunk. Every request goes through the fallback ladder and the retryer,
//! so no attempt is spent while the network is Down.

pub mod keys;
mod packs;
pub mod plan;
pub mod summary;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    future::Future,
    sync::Mutex,
    time::Duration,
};

use futures::{future::join_all, stream, StreamExt};
use tokio::time::Instant;

use crate::{
    compress::decode,
    error::TransferError,
    fallback::{self, Failure, MirrorHealth, Served},
    sync_keys::{key_of, KeyPrefix},
    sync_plan::{self, Action, Held, Role, Version},
    sync_summary::SyncSummary,
    ArtifactKey, ChunkRef, Digest, Encoding, Manifest, MirrorStore, Progress, TransferOptions,
};

/// What a sync covers.
#[derive(Clone, Debug, Default)]
pub struct SyncScope {
    /// The mirrors copied from, by name; empty means every mirror.
    pub from: Vec<String>,
    /// The mirrors copied to, by name; empty means every mirror.
    pub to: Vec<String>,
    /// Only keys that begin with this.
    pub prefix: KeyPrefix,
    /// Read and decide, but write nothing: the summary says what would be copied.
    pub dry_run: bool,
}

/// Why a sync stopped before the end. Everything else (a mirror that cannot be listed, a
/// chunk no source has sound) is a failure in the summary, and the other keys go on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `from` or `to` names a mirror that is not among those given.
    #[error("no mirror is named `{name}`: the mirrors are {known}")]
    UnknownMirror { name: String, known: String },
    /// Cancelled; what was copied stays, and a rerun copies only the rest.
    #[error("cancelled")]
    Cancelled,
}

/// Makes every destination in `scope` hold the newest version of every key on the sources.
/// `mirrors` are in priority order: among sources holding a chunk, the one with the winning
/// manifest is asked first, then the others in this order.
pub async fn sync(
    mirrors: &[MirrorStore],
    scope: &SyncScope,
    options: &TransferOptions,
) -> Result<SyncSummary, SyncError> {
    let started = Instant::now();
    let roles = roles(mirrors, scope)?;
    // As in get: a source whose endpoint the agent says is Down is asked last.
    let watch = fallback::endpoint_watch(mirrors, options.state.as_ref()).await;
    let run = Run {
        mirrors,
        roles,
        options,
        health: MirrorHealth::watching(mirrors, watch),
        dry_run: scope.dry_run,
        cost: Mutex::new((0, Duration::ZERO)),
    };
    let mut summary = SyncSummary {
        dry_run: scope.dry_run,
        ..SyncSummary::default()
    };
    for (mirror, role) in mirrors.iter().zip(&run.roles) {
        if role.destination {
            summary.destination(mirror.name());
        }
    }
    let keys = run.keys(&scope.prefix, &mut summary).await?;
    summary.keys_examined = keys.len();
    for key in &keys {
        run.key(key, &mut summary).await?;
    }
    let (retries, network_wait) = *run.cost.lock().expect("never held across a panic");
    summary.retries = retries;
    summary.network_wait = network_wait;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn roles(mirrors: &[MirrorStore], scope: &SyncScope) -> Result<Vec<Role>, SyncError> {
    for name in scope.from.iter().chain(&scope.to) {
        if !mirrors.iter().any(|m| m.name() == name) {
            let known: Vec<String> = mirrors.iter().map(|m| format!("`{}`", m.name())).collect();
            return Err(SyncError::UnknownMirror {
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    let named = |names: &[String], mirror: &MirrorStore| {
        names.is_empty() || names.iter().any(|n| n == mirror.name())
    };
    Ok(mirrors
        .iter()
        .map(|m| Role {
            source: named(&scope.from, m),
            destination: named(&scope.to, m),
        })
        .collect())
}

/// One sync's state.
struct Run<'a> {
    mirrors: &'a [MirrorStore],
    roles: Vec<Role>,
    options: &'a TransferOptions,
    health: MirrorHealth,
    dry_run: bool,
    /// Calls beyond the first, and the longest wait for the network, over every object.
    cost: Mutex<(u32, Duration)>,
}

/// What one copy to one destination did.
#[derive(Default)]
struct Copied {
    chunks: usize,
    bytes: u64,
    present: usize,
}

impl Run<'_> {
    /// `op` on mirror `m` alone, tried as often as the policy allows, with what it cost counted.
    async fn on_mirror<T, Fut>(
        &self,
        m: usize,
        what: impl FnOnce() -> String,
        op: impl Fn() -> Fut,
    ) -> Result<T, TransferError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let steps = vec![m; self.options.policy.max_attempts.max(1) as usize];
        let served = fallback::run(
            self.options,
            self.mirrors,
            &self.health,
            &steps,
            what,
            |_| op(),
        )
        .await?;
        self.served(&served);
        Ok(served.value)
    }

    fn served<T>(&self, served: &Served<T>) {
        self.add(served.calls.saturating_sub(1), served.report.network_wait);
    }

    fn add(&self, retries: u32, network_wait: Duration) {
        let mut cost = self.cost.lock().expect("never held across a panic");
        cost.0 += retries;
        cost.1 = cost.1.max(network_wait);
    }

    /// A failed request as a reason for the summary; cancelling stops the sync.
    fn reason(&self, error: TransferError) -> Result<String, SyncError> {
        match &error {
            TransferError::Cancelled => return Err(SyncError::Cancelled),
            TransferError::Unavailable { report, .. } => {
                self.add(report.calls.saturating_sub(1), report.network_wait);
            }
            _ => {}
        }
        Ok(error.to_string())
    }

    /// Every key on the sources that begins with `prefix`.
    async fn keys(
        &self,
        prefix: &KeyPrefix,
        summary: &mut SyncSummary,
    ) -> Result<BTreeSet<ArtifactKey>, SyncError> {
        let mut keys = BTreeSet::new();
        for (m, mirror) in self.mirrors.iter().enumerate() {
            if !self.roles[m].source {
                continue;
            }
            let listed = self
                .on_mirror(
                    m,
                    || format!("listing the manifests on mirror `{}`", mirror.name()),
                    || async move {
                        mirror
                            .list_manifests(prefix.directory())
                            .await
                            .map_err(Failure::store)
                    },
                )
                .await;
            match listed {
                Ok(paths) => {
                    for path in &paths {
                        match key_of(path) {
                            Some(key) if prefix.matches(&key) => {
                                keys.insert(key);
                            }
                            Some(_) => {}
                            None => tracing::debug!(mirror = mirror.name(), path, "not a manifest"),
                        }
                    }
                }
                Err(error) => summary.fail(None, mirror.name(), self.reason(error)?),
            }
        }
        Ok(keys)
    }

    /// What mirror `m` holds for `key`.
    async fn read_manifest(&self, m: usize, key: &ArtifactKey) -> Result<Held, SyncError> {
        let mirror = &self.mirrors[m];
        let read = self
            .on_mirror(
                m,
                || {
                    format!(
                        "reading the manifest of {key} on mirror `{}`",
                        mirror.name()
                    )
                },
                || async move {
                    match mirror.get_manifest(key).await {
                        Ok(json) => Ok(Some(json)),
                        Err(error) if error.is_not_found() => Ok(None),
                        Err(error) => Err(Failure::store(error)),
                    }
                },
            )
            .await;
        Ok(match read {
            Ok(None) => Held::Absent,
            Ok(Some(json)) => match Manifest::from_json(&json, key) {
                Ok(manifest) => Held::Valid(manifest),
                Err(error) => Held::Invalid(format!("its manifest is unusable: {error}")),
            },
            Err(error) => Held::Unreadable(self.reason(error)?),
        })
    }

    /// Reads `key` on every mirror in the sync, decides, and copies where the plan says.
    async fn key(&self, key: &ArtifactKey, summary: &mut SyncSummary) -> Result<(), SyncError> {
        let involved: Vec<usize> = (0..self.mirrors.len())
            .filter(|&m| self.roles[m].source || self.roles[m].destination)
            .collect();
        let reads = join_all(involved.iter().map(|&m| self.read_manifest(m, key))).await;
        let mut held = vec![Held::Absent; self.mirrors.len()];
        for (&m, read) in involved.iter().zip(reads) {
            held[m] = read?;
        }
        let plan = sync_plan::plan(&held, &self.roles);
        for (m, problem) in plan.problems {
            summary.fail(Some(key.as_str()), self.mirrors[m].name(), problem);
        }
        let Some(winner) = plan.winner else {
            return Ok(());
        };
        for (destination, action) in plan.actions {
            let name = self.mirrors[destination].name();
            match action {
                Action::UpToDate => summary.destination(name).keys_up_to_date += 1,
                Action::Newer => summary.destination(name).keys_newer += 1,
                Action::Unknown(problem) => summary.fail(
                    Some(key.as_str()),
                    name,
                    format!("nothing written, since what it holds may be newer: {problem}"),
                ),
                Action::Copy { replaces } => {
                    match self.copy(key, &held, winner, destination).await? {
                        Ok(copied) => {
                            let tally = summary.destination(name);
                            tally.keys_copied += 1;
                            tally.chunks_copied += copied.chunks;
                            tally.bytes_copied += copied.bytes;
                            tally.chunks_present += copied.present;
                            if replaces.is_some() {
                                tally.invalid_replaced += 1;
                            }
                        }
                        Err(reason) => {
                            let reason = match replaces {
                                Some(problem) => format!("{reason} (and {problem})"),
                                None => reason,
                            };
                            summary.fail(Some(key.as_str()), name, reason);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies the winner's manifest of `key` to `destination`, after the chunks it lacks.
    /// The inner error is why this copy failed; the destination's manifest is then untouched.
    async fn copy(
        &self,
        key: &ArtifactKey,
        held: &[Held],
        winner: usize,
        destination: usize,
    ) -> Result<Result<Copied, String>, SyncError> {
        let manifest = held[winner]
            .valid()
            .expect("the winner holds a sound manifest");
        let target = &self.mirrors[destination];
        let mut copied = Copied::default();
        let sources = self.sources(winner, destination);
        // Packed chunks go with their packs, whole.
        if let Err(error) = self
            .copy_packs(key, manifest, held, &sources, destination, &mut copied)
            .await
        {
            return Ok(Err(self.reason(error)?));
        }
        // A chunk stored as its own object (format 1) is copied as one; one that occurs
        // twice, once.
        let mut seen = HashSet::new();
        let unique: Vec<&ChunkRef> = manifest
            .chunks
            .iter()
            .filter(|c| c.pack.is_none() && seen.insert(c.id))
            .collect();

        // Which chunks the destination has, and how they are stored there: the manifest it
        // gets records that (another compression level or encoding serves as well).
        let concurrency = self.options.concurrency.max(1);
        // By index: a stream of borrowed chunks would make the future not `Send`.
        let found: Vec<_> = stream::iter(0..unique.len())
            .map(|i| self.find(destination, key, unique[i]))
            .buffered(concurrency)
            .collect()
            .await;
        let mut stored: HashMap<Digest, (Encoding, u64)> = HashMap::new();
        let mut missing = Vec::new();
        for (chunk, found) in unique.iter().zip(found) {
            match found {
                Ok(Some(at)) => {
                    stored.insert(chunk.id, at);
                    copied.present += 1;
                }
                Ok(None) => missing.push(*chunk),
                Err(error) => return Ok(Err(self.reason(error)?)),
            }
        }
        self.options.report(Progress::Planned {
            chunks: missing.len(),
            bytes: missing.iter().map(|c| u64::from(c.size)).sum(),
        });
        if self.dry_run {
            copied.chunks += missing.len();
            copied.bytes += missing.iter().map(|c| c.stored_size).sum::<u64>()
                + manifest.to_json().len() as u64;
            return Ok(Ok(copied));
        }

        // Where each source that holds this very version keeps each chunk, as its manifest says.
        let version = Version::of(manifest);
        let located: Vec<HashMap<Digest, &ChunkRef>> = held
            .iter()
            .map(|h| match h.valid() {
                Some(m) if Version::of(m) == version => {
                    m.chunks.iter().map(|c| (c.id, c)).collect()
                }
                _ => HashMap::new(),
            })
            .collect();
        let mut copies = stream::iter(0..missing.len())
            .map(|i| self.copy_chunk(key, missing[i], &located, &sources, destination))
            .buffer_unordered(concurrency);
        while let Some(result) = copies.next().await {
            match result {
                Ok((chunk, encoding, length, source)) => {
                    stored.insert(chunk.id, (encoding, length));
                    copied.chunks += 1;
                    copied.bytes += length;
                    self.options.report(Progress::Chunk {
                        size: u64::from(chunk.size),
                        moved: length,
                        mirror: format!("{} → {}", self.mirrors[source].name(), target.name()),
                    });
                }
                Err(error) => return Ok(Err(self.reason(error)?)),
            }
        }
        drop(copies);

        let mut written = manifest.clone();
        for chunk in written.chunks.iter_mut().filter(|c| c.pack.is_none()) {
            (chunk.encoding, chunk.stored_size) = stored[&chunk.id];
        }
        let json = written.to_json();
        // What this writes, a reader must accept.
        debug_assert!(Manifest::from_json(&json, key).is_ok());
        let length = json.len() as u64;
        let json = &json;
        let put = self
            .on_mirror(
                destination,
                || {
                    format!(
                        "writing the manifest of {key} to mirror `{}`",
                        target.name()
                    )
                },
                || async move {
                    target
                        .put_manifest(key, json.clone())
                        .await
                        .map_err(Failure::store)
                },
            )
            .await;
        if let Err(error) = put {
            return Ok(Err(self.reason(error)?));
        }
        copied.bytes += length;
        Ok(Ok(copied))
    }

    /// The sources to fetch a chunk from: the winner first, then the others by priority.
    fn sources(&self, winner: usize, destination: usize) -> Vec<usize> {
        std::iter::once(winner)
            .chain(
                (0..self.mirrors.len())
                    .filter(|&m| self.roles[m].source && m != winner && m != destination),
            )
            .collect()
    }

    /// Whether `destination` has `chunk`, in any encoding.
    async fn find(
        &self,
        destination: usize,
        key: &ArtifactKey,
        chunk: &ChunkRef,
    ) -> Result<Option<(Encoding, u64)>, TransferError> {
        let target = &self.mirrors[destination];
        self.on_mirror(
            destination,
            || {
                format!(
                    "looking for chunk {} of {key} on mirror `{}`",
                    chunk.id,
                    target.name()
                )
            },
            || async move {
                target
                    .find_chunk(chunk.id, chunk.encoding)
                    .await
                    .map_err(Failure::store)
            },
        )
        .await
    }

    /// Fetches `chunk` from the first source that gives sound bytes and writes them to
    /// `destination` as they are. Returns the chunk, how it was stored, its stored length and
    /// the source.
    async fn copy_chunk<'c>(
        &self,
        key: &ArtifactKey,
        chunk: &'c ChunkRef,
        located: &[HashMap<Digest, &ChunkRef>],
        sources: &[usize],
        destination: usize,
    ) -> Result<(&'c ChunkRef, Encoding, u64, usize), TransferError> {
        let target = &self.mirrors[destination];
        let steps: Vec<usize> = fallback::get_ladder(sources.len())
            .into_iter()
            .map(|i| sources[i])
            .collect();
        let fetched = fallback::run(
            self.options,
            self.mirrors,
            &self.health,
            &steps,
            || format!("chunk {} of {key} for mirror `{}`", chunk.id, target.name()),
            |m| async move {
                let source = &self.mirrors[m];
                // A source with the same version says how it stores the chunk; another is asked.
                let at = match located[m].get(&chunk.id) {
                    Some(&at) => at.clone(),
                    None => match source
                        .find_chunk(chunk.id, chunk.encoding)
                        .await
                        .map_err(Failure::store)?
                    {
                        Some((encoding, stored_size)) => ChunkRef {
                            encoding,
                            stored_size,
                            ..chunk.clone()
                        },
                        None => {
                            return Err(Failure::Mirror(format!(
                                "mirror `{}` does not have it",
                                source.name()
                            )))
                        }
                    },
                };
                let stored = source.get_chunk(&at).await.map_err(Failure::store)?;
                // Hashing and decompressing are CPU work: off the async threads.
                let check = at.clone();
                let (stored, checked) = tokio::task::spawn_blocking(move || {
                    let checked = decode(&stored, &check).map(drop);
                    (stored, checked)
                })
                .await
                .expect("decoding does not panic");
                checked.map_err(|bad| {
                    Failure::Mirror(format!("mirror `{}` holds bad data: {bad}", source.name()))
                })?;
                Ok((at.encoding, stored))
            },
        )
        .await?;
        self.served(&fetched);
        let source = fetched.mirror;
        let (encoding, stored) = fetched.value;
        let length = stored.len() as u64;
        let stored = &stored;
        self.on_mirror(
            destination,
            || {
                format!(
                    "writing chunk {} of {key} to mirror `{}`",
                    chunk.id,
                    target.name()
                )
            },
            || async move {
                target
                    .put_chunk(chunk.id, encoding, stored.clone())
                    .await
                    .map_err(Failure::store)
            },
        )
        .await?;
        Ok((chunk, encoding, length, source))
    }
}
