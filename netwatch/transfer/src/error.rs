//! Why a transfer failed.

use std::{io, path::PathBuf};

use super::{CacheError, ManifestError, StoreError};
use netwatch_client::retry::RetryReport;

/// Why `put` or `get` failed. Each says what, where, and when it is about mirrors, what each
/// mirror answered.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The file to put could not be read.
    #[error("reading {}: {source}", path.display())]
    Input {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The output could not be written; nothing was left at the output path.
    #[error("{action} {}: {source}", path.display())]
    Output {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The output path cannot be used.
    #[error("{}: {problem}", path.display())]
    BadOutput { path: PathBuf, problem: String },
    /// The artifact does not fit where it is to be written.
    #[error(
        "{}: the artifact is {size} bytes ({}), more than {why}, {limit} bytes ({}); nothing \
         was fetched",
        path.display(),
        human(*size),
        human(*limit)
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
        why: &'static str,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A mirror could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No mirror served something, after every fallback and retry.
    #[error("{what}: {why}")]
    Unavailable {
        /// "the manifest of KEY", "chunk 3 of KEY (ID, bytes A..B)".
        what: String,
        /// What each mirror answered, or why the retries stopped.
        why: String,
        report: Box<RetryReport>,
    },
    /// The manifest kept in the local cache (no mirror answered) is unusable.
    #[error(
        "no mirror answered, and the manifest of {key} in the local cache is unusable: {source}"
    )]
    CachedManifest {
        key: String,
        #[source]
        source: ManifestError,
    },
    /// The transfer was cancelled; chunks fetched so far stay in the cache.
    #[error("cancelled")]
    Cancelled,
}

/// 1.2 GiB: sizes at a glance.
fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1} PiB")
}

impl TransferError {
    pub(crate) fn output(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Output {
            action,
            path,
            source,
        }
    }
}
