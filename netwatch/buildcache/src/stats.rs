//! What the server counts: hits by where they came from, misses, stores, and each mirror's
//! share and write-back queue. Shown as JSON (`netwatch cache-server --status`) and in
//! Prometheus's text format, both at `/_netwatch/…` on the server's own address.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

/// Counters for one mirror.
#[derive(Debug, Default)]
pub struct MirrorCounters {
    pub name: String,
    /// Lookups sent to this mirror.
    pub asked: AtomicU64,
    /// Entries this mirror served.
    pub hits: AtomicU64,
    /// Entries uploaded to it by write-back.
    pub uploaded: AtomicU64,
    /// Uploads that failed (and stay queued).
    pub upload_failures: AtomicU64,
    /// Entries waiting for it.
    pub queued: AtomicU64,
    /// How long its answers take, smoothed, in microseconds (0 until the first): what the
    /// hedge delay scales with.
    pub answer_us: AtomicU64,
}

impl MirrorCounters {
    /// Folds one answer's time into the smoothed figure (an eighth of the way).
    pub fn observe_answer(&self, took: std::time::Duration) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let _ = self
            .answer_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    micros.max(1)
                } else {
                    (old * 7 + micros) / 8
                })
            });
    }

    /// The smoothed answer time, once there is one.
    pub fn answer_time(&self) -> Option<std::time::Duration> {
        match self.answer_us.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(std::time::Duration::from_micros(micros)),
        }
    }
}

/// The server's counters since it started.
#[derive(Debug, Default)]
pub struct Stats {
    pub lookups: AtomicU64,
    pub local_hits: AtomicU64,
    pub mirror_hits: AtomicU64,
    pub misses: AtomicU64,
    /// Misses answered because the deadline came, not because every mirror said no.
    pub deadline_misses: AtomicU64,
    pub stores: AtomicU64,
    pub bytes_served: AtomicU64,
    pub bytes_stored: AtomicU64,
    /// Requests refused: bad paths, bodies too large, cas digests that do not match.
    pub refused: AtomicU64,
    /// The local store's size, and what eviction removed from it.
    pub local_bytes: AtomicU64,
    pub evicted_entries: AtomicU64,
    pub evicted_bytes: AtomicU64,
    pub mirrors: Vec<MirrorCounters>,
}

impl Stats {
    pub fn new(mirror_names: impl IntoIterator<Item = String>) -> Self {
        Self {
            mirrors: mirror_names
                .into_iter()
                .map(|name| MirrorCounters {
                    name,
                    ..MirrorCounters::default()
                })
                .collect(),
            ..Self::default()
        }
    }

    pub fn count(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn mirror(&self, name: &str) -> Option<&MirrorCounters> {
        self.mirrors.iter().find(|m| m.name == name)
    }

    /// A copy of every figure.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let lookups = get(&self.lookups);
        let hits = get(&self.local_hits) + get(&self.mirror_hits);
        Snapshot {
            lookups,
            local_hits: get(&self.local_hits),
            mirror_hits: get(&self.mirror_hits),
            misses: get(&self.misses),
            deadline_misses: get(&self.deadline_misses),
            hit_rate: (lookups > 0).then(|| hits as f64 / lookups as f64),
            stores: get(&self.stores),
            bytes_served: get(&self.bytes_served),
            bytes_stored: get(&self.bytes_stored),
            refused: get(&self.refused),
            local_bytes: get(&self.local_bytes),
            evicted_entries: get(&self.evicted_entries),
            evicted_bytes: get(&self.evicted_bytes),
            mirrors: self
                .mirrors
                .iter()
                .map(|m| MirrorSnapshot {
                    name: m.name.clone(),
                    asked: get(&m.asked),
                    hits: get(&m.hits),
                    uploaded: get(&m.uploaded),
                    upload_failures: get(&m.upload_failures),
                    queued: get(&m.queued),
                })
                .collect(),
        }
    }
}

/// The figures at one moment, as `--status --json` prints them.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Snapshot {
    pub lookups: u64,
    pub local_hits: u64,
    pub mirror_hits: u64,
    pub misses: u64,
    pub deadline_misses: u64,
    pub hit_rate: Option<f64>,
    pub stores: u64,
    pub bytes_served: u64,
    pub bytes_stored: u64,
    pub refused: u64,
    pub local_bytes: u64,
    pub evicted_entries: u64,
    pub evicted_bytes: u64,
    pub mirrors: Vec<MirrorSnapshot>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct MirrorSnapshot {
    pub name: String,
    pub asked: u64,
    pub hits: u64,
    pub uploaded: u64,
    pub upload_failures: u64,
    pub queued: u64,
}

impl Snapshot {
    /// Prometheus's text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP netwatch_buildcache_{name} {help}\n# TYPE netwatch_buildcache_{name} counter\nnetwatch_buildcache_{name} {value}"
            );
        };
        counter(
            "lookups_total",
            "Entries asked for (GET and HEAD).",
            self.lookups,
        );
        counter(
            "local_hits_total",
            "Lookups answered from this host's store.",
            self.local_hits,
        );
        counter(
            "mirror_hits_total",
            "Lookups answered from a mirror.",
            self.mirror_hits,
        );
        counter("misses_total", "Lookups answered 404.", self.misses);
        counter(
            "deadline_misses_total",
            "Misses answered because the miss deadline came first.",
            self.deadline_misses,
        );
        counter("stores_total", "Entries stored (PUT).", self.stores);
        counter(
            "served_bytes_total",
            "Content bytes served.",
            self.bytes_served,
        );
        counter(
            "stored_bytes_total",
            "Content bytes stored.",
            self.bytes_stored,
        );
        counter(
            "refused_total",
            "Requests refused as malformed.",
            self.refused,
        );
        let mut per_mirror =
            |name: &str, kind: &str, help: &str, value: fn(&MirrorSnapshot) -> u64| {
                let _ = writeln!(
                out,
                "# HELP netwatch_buildcache_{name} {help}\n# TYPE netwatch_buildcache_{name} {kind}"
            );
                for mirror in &self.mirrors {
                    let _ = writeln!(
                        out,
                        "netwatch_buildcache_{name}{{mirror=\"{}\"}} {}",
                        escape(&mirror.name),
                        value(mirror)
                    );
                }
            };
        per_mirror(
            "mirror_asked_total",
            "counter",
            "Lookups sent to each mirror.",
            |m| m.asked,
        );
        per_mirror(
            "mirror_served_total",
            "counter",
            "Entries each mirror served.",
            |m| m.hits,
        );
        per_mirror(
            "uploaded_total",
            "counter",
            "Entries written back to each mirror.",
            |m| m.uploaded,
        );
        per_mirror(
            "upload_failures_total",
            "counter",
            "Write-backs that failed and stay queued.",
            |m| m.upload_failures,
        );
        per_mirror(
            "queued",
            "gauge",
            "Entries waiting to be written to each mirror.",
            |m| m.queued,
        );
        out
    }
}

/// A label value escaped as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self
            .hit_rate
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        writeln!(
            f,
            "lookups {}: {} local hits, {} mirror hits, {} misses ({} at the deadline); hit rate {rate}",
            self.lookups, self.local_hits, self.mirror_hits, self.misses, self.deadline_misses
        )?;
        writeln!(
            f,
            "stored {} entries ({} bytes); served {} bytes; refused {}",
            self.stores, self.bytes_stored, self.bytes_served, self.refused
        )?;
        writeln!(
            f,
            "local store {} bytes; evicted {} entries ({} bytes)",
            self.local_bytes, self.evicted_entries, self.evicted_bytes
        )?;
        for m in &self.mirrors {
            writeln!(
                f,
                "mirror {}: asked {}, served {}, uploaded {}, upload failures {}, queued {}",
                m.name, m.asked, m.hits, m.uploaded, m.upload_failures, m.queued
            )?;
        }
        Ok(())
    }
}
