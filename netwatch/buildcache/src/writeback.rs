//! Write-back: an entry stored by a build is in the local store at once and reaches every
//! mirror later. The queue is a directory per mirror of empty marker files, `<id>.<seq>`, so
//! it survives a restart; a marker is removed only after its upload succeeded, and a store
//! that replaces an entry mid-upload leaves a marker of its own. While the agent says a
//! mirror is Down (or the host is), its queue waits for the verdict to change instead of
//! spending requests. While the path is Degraded, it holds for up to `DEGRADED_HOLD`, leaving
//! the link to the builds' reads, then goes on one upload at a time (a path that stays
//! Degraded must not keep entries from a mirror for ever). Failures back off.

use std::{
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use netwatch_transfer::{Digest, MirrorStore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{entry, local::LocalStore, stats::Stats, verdicts::Verdicts, EntryKey};

/// Uploads in flight per mirror.
const UPLOADS_IN_FLIGHT: usize = 8;
/// Markers taken per round.
const BATCH: usize = 256;
/// The longest one upload may take before it counts as failed.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Backoff after a failed round: doubled up to the cap, reset by a good round.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an idle queue looks at its directory anyway (another process's markers).
const IDLE_LOOK: Duration = Duration::from_secs(30);
/// How long a queue holds while its mirror's path is Degraded before it goes on slowly.
const DEGRADED_HOLD: Duration = Duration::from_secs(30);

/// The queues, one per mirror.
pub struct Queue {
    lanes: Vec<Lane>,
    next_marker: AtomicU64,
}

struct Lane {
    directory: PathBuf,
    wake: Arc<Notify>,
}

impl Queue {
    /// The queues under `root` (`<cache>/buildcache/queue`), created if missing; markers
    /// left by an earlier run are counted into `stats`.
    pub fn open(root: &Path, mirrors: &[MirrorStore], stats: &Stats) -> io::Result<Self> {
        let mut lanes = Vec::new();
        for mirror in mirrors {
            let directory = root.join(lane_name(mirror.name()));
            std::fs::create_dir_all(&directory)?;
            let waiting = std::fs::read_dir(&directory)?.count() as u64;
            if let Some(counters) = stats.mirror(mirror.name()) {
                counters.queued.store(waiting, Ordering::Relaxed);
            }
            lanes.push(Lane {
                directory,
                wake: Arc::new(Notify::new()),
            });
        }
        Ok(Self {
            lanes,
            next_marker: AtomicU64::new(0),
        })
    }

    /// Queues `key` for every mirror (its sealed entry is already in the local store).
    pub fn enqueue(&self, key: &EntryKey, stats: &Stats) -> io::Result<()> {
        let seq = self.next_marker.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}.{}-{seq}", key.id().to_hex(), std::process::id());
        for (lane, counters) in self.lanes.iter().zip(&stats.mirrors) {
            // Exclusively, never through a symlink someone planted under this name.
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(lane.directory.join(&name))?;
            Stats::count(&counters.queued);
            lane.wake.notify_one();
        }
        Ok(())
    }

    /// Starts one uploader per mirror; they stop when `cancel` is cancelled.
    pub fn start(
        &self,
        mirrors: &[MirrorStore],
        local: Arc<LocalStore>,
        verdicts: &Verdicts,
        stats: Arc<Stats>,
        cancel: &CancellationToken,
    ) {
        for (index, (lane, mirror)) in self.lanes.iter().zip(mirrors).enumerate() {
            let uploader = Uploader {
                directory: lane.directory.clone(),
                wake: Arc::clone(&lane.wake),
                mirror: mirror.clone(),
                index,
                local: Arc::clone(&local),
                verdicts: verdicts.clone(),
                stats: Arc::clone(&stats),
            };
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = uploader.run() => {}
                }
            });
        }
    }
}

/// A mirror's directory in the queue: its name's digest, so any name is a safe file name.
fn lane_name(mirror: &str) -> String {
    format!(
        "mirror-{}",
        &Digest::sha256(mirror.as_bytes()).to_hex()[..16]
    )
}

struct Uploader {
    directory: PathBuf,
    wake: Arc<Notify>,
    mirror: MirrorStore,
    index: usize,
    local: Arc<LocalStore>,
    verdicts: Verdicts,
    stats: Arc<Stats>,
}

impl Uploader {
    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            while self.verdicts.is_down(&self.mirror) {
                tracing::debug!(
                    mirror = self.mirror.name(),
                    "write-back waits: the agent says Down"
                );
                self.verdicts.changed().await;
            }
            let mut in_flight = UPLOADS_IN_FLIGHT;
            if self.verdicts.is_degraded(&self.mirror) {
                tracing::debug!(
                    mirror = self.mirror.name(),
                    "write-back holds: the agent says Degraded"
                );
                let mut verdicts = self.verdicts.clone();
                let hold = async {
                    while verdicts.is_degraded(&self.mirror) {
                        verdicts.changed().await;
                    }
                };
                if tokio::time::timeout(DEGRADED_HOLD, hold).await.is_err() {
                    in_flight = 1;
                } else {
                    continue;
                }
            }
            let markers = match self.markers() {
                Ok(markers) => markers,
                Err(error) => {
                    tracing::warn!(directory = %self.directory.display(), %error, "cannot read the write-back queue");
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
            if markers.is_empty() {
                let _ = tokio::time::timeout(IDLE_LOOK, self.wake.notified()).await;
                continue;
            }
            let results: Vec<bool> = futures::stream::iter(markers)
                .map(|marker| self.upload(marker))
                .buffer_unordered(in_flight)
                .collect()
                .await;
            if results.iter().all(|ok| *ok) {
                backoff = FIRST_BACKOFF;
                continue;
            }
            // Wait out the backoff, or less if the verdict changes (the link came back).
            let mut verdicts = self.verdicts.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = verdicts.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn markers(&self) -> io::Result<Vec<String>> {
        let mut markers = Vec::new();
        for entry in std::fs::read_dir(&self.directory)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            markers.push(name);
            if markers.len() == BATCH {
                break;
            }
        }
        Ok(markers)
    }

    /// Uploads the entry a marker names; true if the marker is done with (uploaded, or its
    /// entry is gone from the local store).
    async fn upload(&self, marker: String) -> bool {
        let counters = &self.stats.mirrors[self.index];
        let hex = marker.split('.').next().unwrap_or_default().to_string();
        let sealed = match self.local.read_by_id(&hex) {
            Ok(Some(sealed)) => Some(sealed),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, entry = hex, "write-back cannot read a local entry");
                return false;
            }
        };
        if let Some(sealed) = sealed {
            let path = entry::object_path(&hex);
            let put = tokio::time::timeout(UPLOAD_TIMEOUT, self.mirror.write_object(&path, sealed));
            match put.await {
                Ok(Ok(())) => Stats::count(&counters.uploaded),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "write-back failed; the entry stays queued");
                    Stats::count(&counters.upload_failures);
                    return false;
                }
                Err(_) => {
                    tracing::debug!(
                        mirror = self.mirror.name(),
                        "write-back timed out; the entry stays queued"
                    );
                    Stats::count(&counters.upload_failures);
                    return false;
                }
            }
        }
        match std::fs::remove_file(self.directory.join(&marker)) {
            Ok(()) => {
                counters.queued.fetch_sub(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, marker, "cannot remove a write-back marker"),
        }
        true
    }
}
