//! The build cache itself, apart from HTTP: a lookup is the local store, then the mirrors
//! within the deadline; a store is the local store at once and the mirrors by write-back.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{
    budget::{Budget, Room},
    entry::{EntryKey, SealError},
    local::LocalStore,
    lookup::{Found, Lookup},
    stats::Stats,
    writeback::Queue,
};

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Mirror(usize),
}

/// A store that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    #[error(transparent)]
    Refused(#[from] SealError),
    #[error("cannot write the entry to the local store: {0}")]
    Local(#[source] io::Error),
}

pub struct BuildCache {
    local: Arc<LocalStore>,
    queue: Queue,
    lookup: Lookup,
    stats: Arc<Stats>,
    /// The local store's cap, if any, and the queue eviction spares.
    max_local: Option<u64>,
    queue_root: PathBuf,
    evicting: Arc<AtomicBool>,
    /// The memory entries in passage may take: bodies being stored, mirrors' answers.
    budget: Budget,
}

impl BuildCache {
    /// The cache kept under `root` (`<cache>/buildcache`), at most `max_local` bytes of it
    /// (`None` for no cap), its uploaders started; they stop with `cancel`.
    pub fn start(
        root: &Path,
        lookup: Lookup,
        max_local: Option<u64>,
        cancel: &CancellationToken,
    ) -> io::Result<Self> {
        let stats = Arc::new(Stats::new(
            lookup.mirrors.iter().map(|m| m.name().to_string()),
        ));
        let local = Arc::new(LocalStore::open(root)?);
        let queue_root = root.join("queue");
        let queue = Queue::open(&queue_root, &lookup.mirrors, &stats)?;
        queue.start(
            &lookup.mirrors,
            Arc::clone(&local),
            &lookup.verdicts,
            Arc::clone(&stats),
            cancel,
        );
        let budget = Budget::for_entries(lookup.max_entry);
        let cache = Self {
            budget,
            local,
            queue,
            lookup,
            stats,
            max_local,
            queue_root,
            evicting: Arc::new(AtomicBool::new(false)),
        };
        cache.evict_if_over();
        Ok(cache)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every figure now, the local store's size included.
    pub fn snapshot(&self) -> crate::Snapshot {
        self.stats
            .local_bytes
            .store(self.local.bytes(), Ordering::Relaxed);
        self.stats.snapshot()
    }

    /// Past the cap, evicts down to nine tenths of it on a blocking thread (one pass at a
    /// time; the store goes on serving meanwhile).
    fn evict_if_over(&self) {
        let Some(max) = self.max_local else {
            return;
        };
        if self.local.bytes() <= max || self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (local, queue, stats, evicting) = (
            Arc::clone(&self.local),
            self.queue_root.clone(),
            Arc::clone(&self.stats),
            Arc::clone(&self.evicting),
        );
        tokio::task::spawn_blocking(move || {
            match local.evict_to(&queue, max / 10 * 9) {
                Ok(evicted) => {
                    Stats::add(&stats.evicted_entries, evicted.files);
                    Stats::add(&stats.evicted_bytes, evicted.bytes);
                    tracing::debug!(?evicted, "build cache: evicted past the cap");
                }
                Err(error) => tracing::warn!(%error, "build cache: eviction failed"),
            }
            evicting.store(false, Ordering::Release);
        });
    }

    pub fn max_entry(&self) -> u64 {
        self.lookup.max_entry
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The entry's content and where it came from, or `None` for a miss.
    pub async fn get(&self, key: &EntryKey) -> Option<(Bytes, Source)> {
        Stats::count(&self.stats.lookups);
        let local = Arc::clone(&self.local);
        let wanted = key.clone();
        let here = tokio::task::spawn_blocking(move || local.read(&wanted))
            .await
            .expect("a local read does not panic");
        match here {
            Ok(Some(content)) => {
                return Some(self.served(content, Source::Local));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, key = key.path(), "cannot read the local build cache; asking the mirrors")
            }
        }
        match self.lookup.find(key, &self.stats, &self.budget).await {
            Found::Hit {
                sealed,
                content,
                mirror,
                room,
            } => {
                self.keep(key, sealed, room);
                Stats::count(&self.stats.mirrors[mirror].hits);
                Some(self.served(content, Source::Mirror(mirror)))
            }
            Found::Miss => {
                Stats::count(&self.stats.misses);
                None
            }
            Found::Late => {
                Stats::count(&self.stats.misses);
                Stats::count(&self.stats.deadline_misses);
                None
            }
        }
    }

    fn served(&self, content: Bytes, source: Source) -> (Bytes, Source) {
        let counter = match source {
            Source::Local => &self.stats.local_hits,
            Source::Mirror(_) => &self.stats.mirror_hits,
        };
        Stats::count(counter);
        Stats::add(&self.stats.bytes_served, content.len() as u64);
        (content, source)
    }

    /// Keeps a mirror's entry locally, in the background: the answer does not wait for it.
    /// Its share of the budget (`room`) is given back once it is written.
    fn keep(&self, key: &EntryKey, sealed: Bytes, room: Room) {
        let local = Arc::clone(&self.local);
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = local.write(&key, &sealed) {
                tracing::warn!(%error, key = key.path(), "cannot keep a mirror's entry locally");
            }
            drop(room);
        });
        self.evict_if_over();
    }

    /// Stores `content` under `key`: locally now, on the mirrors by write-back.
    pub async fn put(&self, key: &EntryKey, content: &[u8]) -> Result<(), StoreFailure> {
        let sealed = key.seal(content)?;
        let local = Arc::clone(&self.local);
        let wanted = key.clone();
        tokio::task::spawn_blocking(move || local.write(&wanted, &sealed))
            .await
            .expect("a local write does not panic")
            .map_err(StoreFailure::Local)?;
        self.queue
            .enqueue(key, &self.stats)
            .map_err(StoreFailure::Local)?;
        Stats::count(&self.stats.stores);
        Stats::add(&self.stats.bytes_stored, content.len() as u64);
        self.evict_if_over();
        Ok(())
    }

    /// Forgets the entry on this host (mirrors keep theirs), on a blocking thread: an unlink
    /// on a slow disk must not hold up the requests this thread serves.
    pub async fn remove(&self, key: &EntryKey) -> io::Result<bool> {
        let (local, key) = (Arc::clone(&self.local), key.clone());
        tokio::task::spawn_blocking(move || local.remove(&key))
            .await
            .expect("a local remove does not panic")
    }
}
