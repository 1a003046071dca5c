//! A build cache for the build tools people already run: ccache's `http` remote storage and
//! Bazel's HTTP remote cache (`/ac/`, `/cas/`) talk to a server on loopback, which answers
//! from this host's store, then from the mirrors in rank order, skipping those the agent
//! calls Down, and answers a miss by a deadline so that a slow or cut mirror never stalls a
//! build (the tool compiles instead). Stores land locally at once and reach every mirror by
//! write-back, queued on disk while a mirror is Down. See `docs/build-cache.md`.

mod budget;
mod cache;
mod entry;
mod evict;
mod http;
mod local;
mod lookup;
mod quick_ack;
mod stats;
mod verdicts;
mod writeback;

use std::time::Duration;

pub use cache::{BuildCache, Source, StoreFailure};
pub use entry::{EntryKey, KeyError, Kind, OpenError, SealError, MAX_KEY_PATH};
pub use evict::{usage as store_usage, Evicted, StoreUsage};
pub use http::{bind, fetch_status, serve, ListenError, StatusError};
pub use local::LocalStore;
pub use lookup::{Found, Lookup};
pub use stats::{MirrorSnapshot, Snapshot, Stats};
pub use verdicts::Verdicts;

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8780";
/// How long a lookup may take before it is answered as a miss: less than a small
/// compilation takes, so a miss never costs a build more than the compile itself.
pub const DEFAULT_MISS_DEADLINE: Duration = Duration::from_millis(150);
/// How long the best mirror has before the next is asked too.
pub const DEFAULT_HEDGE: Duration = Duration::from_millis(40);
/// The largest entry stored: a big object file or a Bazel output; entries are held in memory
/// while they pass.
pub const DEFAULT_MAX_ENTRY: u64 = 256 << 20;

#[cfg(test)]
mod tests;
