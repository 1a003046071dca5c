//! Owns cache-mirror transfers: artifacts cut into content-defined chunks, each stored once
//! per mirror under its digest (BLAKE3; SHA-256 before format 3), with a manifest per artifact; `put` uploads the chunks a
//! mirror lacks, `get` fetches the chunks the local cache lacks, falling back across mirrors
//! by priority and retrying with `netwatch_client::retry`, so no attempt is spent while the network
//! is Down. See `docs/transfer.md`.
//!
//! ```no_run
//! use netwatch_transfer::{get, Access, ChunkCache, Fetch, MirrorStore, MirrorUrl, TransferOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let url: MirrorUrl = "file:///srv/mirror".parse()?;
//! let mirrors = vec![MirrorStore::open("local", &url, Access::Read)?];
//! let cache = ChunkCache::new("/var/cache/netwatch");
//! let key = "builds/app.tar".parse()?;
//! let fetch = Fetch::new(&key, "app.tar".as_ref(), &mirrors, &cache);
//! let summary = get(fetch, &TransferOptions::default()).await?;
//! println!("{} of {} bytes moved", summary.bytes_moved, summary.artifact_bytes);
//! # Ok(()) }
//! ```

mod activity;
mod cache;
mod content;
mod error;
mod gc;
mod get;
mod mirrors;
mod put;
mod store;
mod summary;
mod sync;
#[cfg(test)]
mod tests;

// The concepts' modules under their own names, for the code within; and the client's.
use content::{chunk, compress, digest, key, manifest, pack};
use mirrors::{fallback, measure, score, scoreboard};
use netwatch_client::{retry, state};
use store::url;
use sync::{keys as sync_keys, plan as sync_plan, summary as sync_summary};

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

pub use cache::{CacheError, ChunkCache, Evicted, Usage as CacheUsage};
pub use chunk::{Chunker, Piece, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use compress::{
    choose_level, decode, encode, measure, ChunkError, Compression, Encoding, LevelSpeed,
    CANDIDATE_LEVELS, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL,
};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::TransferError;
pub use gc::{gc, GcError, GcOptions, GcSummary, DEFAULT_GRACE};
pub use get::{get, Fetch};
pub use key::{ArtifactKey, KeyError};
pub use manifest::{ChunkRef, Manifest, ManifestError, PackAt, FORMAT_VERSION};
pub use measure::{
    bandwidth_object, ensure_bandwidth_object, measure_mirrors, measure_mirrors_with,
    MeasureLimits, MirrorMeasurement, BANDWIDTH_OBJECT_SIZE, MEASURE_RANGE, MEASURE_TIMEOUT,
};
pub use mirrors::rank::{get_ranked, rank_mirrors};
pub use pack::{PackId, PackSpot, DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE};
pub use put::put;
pub use score::{rank, scores, Candidate, Figures, Standing, BANDWIDTH_WEIGHT, LATENCY_WEIGHT};
pub use scoreboard::{Entry, Ranked, Scoreboard, ScoreboardError, SCOREBOARD_FILE, STALE_AFTER};
pub use store::{
    chunk_path, manifest_path, Access, MirrorStore, RangeRead, StoreError, BANDWIDTH_OBJECT,
};
pub use summary::{MirrorTally, Summary};
pub use sync::{sync, SyncError, SyncScope};
pub use sync_keys::{KeyPrefix, PrefixError};
pub use sync_summary::{DestinationTally, SyncFailure, SyncSummary};
pub use url::{MirrorUrl, UrlError};

use netwatch_client::{
    retry::{RetryBudget, RetryPolicy, StateSource},
    state::Subject,
};

/// The local cache's default cap: 10 GiB.
pub const DEFAULT_CACHE_MAX: u64 = 10 << 30;
/// How long a mirror may send nothing during a `get` request: long enough for a busy object
/// store's first byte, short enough that a build notices a mirror whose path was cut.
pub const DEFAULT_STALL: Duration = Duration::from_secs(10);

/// Chunks in flight at once, per transfer.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What happened, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The work is known: `chunks` chunks of `bytes` bytes to move (the rest is reused).
    Planned { chunks: usize, bytes: u64 },
    /// A chunk was moved: `size` bytes of the artifact, `moved` on the wire, via `mirror`.
    Chunk {
        size: u64,
        moved: u64,
        mirror: String,
    },
}

/// Receives progress events; called from the transfer's task, so it must be quick.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a transfer runs. `Default` gives plain backoff without the agent (the CLI connects
/// the agent's socket).
#[derive(Clone)]
pub struct TransferOptions {
    /// Chunks in flight at once.
    pub concurrency: usize,
    /// The retry policy for each chunk and manifest. For `get`, `max_attempts` is replaced
    /// by the length of the fallback ladder (primary twice, secondary twice, tertiary once).
    pub policy: RetryPolicy,
    /// Where the network's state comes from; `None` for plain backoff.
    pub state: Option<Arc<dyn StateSource>>,
    /// Whose verdict decides: the host, or an endpoint.
    pub subject: Subject,
    pub budget: RetryBudget,
    /// Cancelling ends the transfer at once; chunks already in the cache stay there.
    pub cancel: CancellationToken,
    /// `put`: how chunks are stored.
    pub compression: Compression,
    /// `put`: the link's measured bandwidth, for `Compression::Auto`; unknown means the
    /// speed of writing the bandwidth object if `put` writes it now, else zstd at the default
    /// level.
    pub link_bytes_per_sec: Option<f64>,
    /// Called as chunks are moved.
    pub progress: Option<ProgressFn>,
    /// `get`: the largest artifact it writes; `None` for no cap but the free space.
    pub max_output: Option<u64>,
    /// `put`: the size packs are filled to before they are uploaded.
    pub pack_size: u64,
    /// `get`: the local cache's cap; the least recently used is evicted past it, after the
    /// get. `None` for no cap.
    pub cache_max: Option<u64>,
    /// `get`: how long a mirror may send nothing during a request before the request is
    /// taken to the next mirror.
    pub stall: Duration,
    /// `put`: what names the chunks and the whole file. `None` follows the key's current
    /// manifest (so an artifact first put with SHA-256 still moves only what changed), and
    /// BLAKE3 for a new key; another algorithm than the current manifest's stores every
    /// chunk again under it (ids of one cannot name chunks of the other).
    pub digest: Option<Algorithm>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            policy: RetryPolicy {
                degraded: netwatch_client::retry::DegradedPolicy {
                    switch_mirror: true,
                    ..Default::default()
                },
                ..RetryPolicy::default()
            },
            state: None,
            subject: Subject::Host,
            budget: RetryBudget::global(),
            cancel: CancellationToken::new(),
            compression: Compression::Auto,
            link_bytes_per_sec: None,
            progress: None,
            max_output: None,
            pack_size: DEFAULT_PACK_SIZE,
            cache_max: Some(DEFAULT_CACHE_MAX),
            stall: DEFAULT_STALL,
            digest: None,
        }
    }
}

impl TransferOptions {
    fn report(&self, event: Progress) {
        if let Some(progress) = &self.progress {
            progress(&event);
        }
    }

    /// Runs `work` unless the transfer is cancelled first.
    pub async fn unless_cancelled<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, TransferError> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(TransferError::Cancelled),
            done = work => Ok(done),
        }
    }
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("concurrency", &self.concurrency)
            .field("policy", &self.policy)
            .field("subject", &self.subject)
            .field("compression", &self.compression)
            .field("link_bytes_per_sec", &self.link_bytes_per_sec)
            .finish_non_exhaustive()
    }
}
