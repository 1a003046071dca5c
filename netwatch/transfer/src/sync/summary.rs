//! What a `sync` did, for people (`Display`) and machines (`--json`).

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Serialize;

use crate::summary::{millis, write_costs};

/// The figures of a finished sync. In a dry run, what it would have copied.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SyncSummary {
    pub dry_run: bool,
    /// Keys found on the source mirrors (within the prefix).
    pub keys_examined: usize,
    /// Per destination mirror.
    pub destinations: BTreeMap<String, DestinationTally>,
    /// What could not be done; empty when the sync succeeded.
    pub failures: Vec<SyncFailure>,
    /// Calls beyond the first, over all objects: retries and fallbacks.
    pub retries: u32,
    /// The longest any object waited for the network to come back.
    #[serde(rename = "network_wait_ms", serialize_with = "millis")]
    pub network_wait: Duration,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

/// One destination's share of a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestinationTally {
    /// Manifests written (the newer version of a key, or a key it lacked).
    pub keys_copied: usize,
    /// Chunks written, and the bytes written: stored chunks and manifests.
    pub chunks_copied: usize,
    pub bytes_copied: u64,
    /// Chunks a copied manifest names that the destination had already.
    pub chunks_present: usize,
    /// Keys it held at the winning version already.
    pub keys_up_to_date: usize,
    /// Keys it held at a newer version than any source: left as they were.
    pub keys_newer: usize,
    /// Manifests it held that failed their checks, replaced by a sound one.
    pub invalid_replaced: usize,
}

/// Something a sync could not do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncFailure {
    /// The key, or none for a whole mirror (listing its manifests failed).
    pub key: Option<String>,
    /// The mirror concerned: the destination of a failed copy, or the mirror holding a bad
    /// manifest.
    pub mirror: String,
    pub reason: String,
}

impl SyncSummary {
    /// Whether every key converged.
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty()
    }

    pub(crate) fn destination(&mut self, name: &str) -> &mut DestinationTally {
        self.destinations.entry(name.to_string()).or_default()
    }

    /// Records a failure: of `key` (or of the mirror as a whole) at `mirror`.
    pub fn fail(&mut self, key: Option<&str>, mirror: &str, reason: impl Into<String>) {
        self.failures.push(SyncFailure {
            key: key.map(str::to_string),
            mirror: mirror.to_string(),
            reason: reason.into(),
        });
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

impl fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let copied: usize = self.destinations.values().map(|d| d.keys_copied).sum();
        writeln!(
            f,
            "sync{}: {} examined, {} {}, {}",
            if self.dry_run { " (dry run)" } else { "" },
            plural(self.keys_examined, "key", "keys"),
            plural(copied, "manifest", "manifests"),
            if self.dry_run { "to copy" } else { "copied" },
            plural(self.failures.len(), "failure", "failures"),
        )?;
        for (name, d) in &self.destinations {
            write!(
                f,
                "  to {name}: {} ({}, {:.2} MiB), {} already there, {} up to date, {} newer there",
                plural(d.keys_copied, "key", "keys"),
                plural(d.chunks_copied, "chunk", "chunks"),
                mib(d.bytes_copied),
                plural(d.chunks_present, "chunk", "chunks"),
                plural(d.keys_up_to_date, "key", "keys"),
                plural(d.keys_newer, "key", "keys"),
            )?;
            if d.invalid_replaced > 0 {
                write!(
                    f,
                    ", {} replaced",
                    plural(d.invalid_replaced, "bad manifest", "bad manifests")
                )?;
            }
            writeln!(f)?;
        }
        for failure in &self.failures {
            match &failure.key {
                Some(key) => writeln!(
                    f,
                    "  failed: {key} on {}: {}",
                    failure.mirror, failure.reason
                )?,
                None => writeln!(f, "  failed: mirror {}: {}", failure.mirror, failure.reason)?,
            }
        }
        write_costs(f, self.retries, self.network_wait, self.elapsed)
    }
}
