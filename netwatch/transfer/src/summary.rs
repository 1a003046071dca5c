//! What a transfer did, for people (`Display`) and machines (`--json`).

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Serialize;

/// The figures of a finished `put` or `get`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// "put" or "get".
    pub operation: &'static str,
    pub key: String,
    /// The artifact's size.
    pub artifact_bytes: u64,
    /// Its chunks, and how many were moved (the others were in the local cache, or already on
    /// the mirror).
    pub chunks: usize,
    pub chunks_moved: usize,
    /// Bytes sent or received: stored (compressed) chunks and the manifest.
    pub bytes_moved: u64,
    /// Bytes of the artifact not moved because the other side had them.
    pub bytes_reused: u64,
    /// `bytes_reused / artifact_bytes`: what the delta saved, before compression.
    pub delta_savings: f64,
    /// The manifest's size, part of `bytes_moved`.
    pub manifest_bytes: u64,
    /// Per mirror: bytes moved, chunks served, failures met.
    pub mirrors: BTreeMap<String, MirrorTally>,
    /// Calls beyond the first, over all chunks: retries and fallbacks.
    pub retries: u32,
    /// The longest any chunk waited for the network to come back (chunks wait together).
    #[serde(rename = "network_wait_ms", serialize_with = "millis")]
    pub network_wait: Duration,
    /// After the longest wait, how soon after the agent called the network Up its request
    /// started again (no request waited: none). In milliseconds, to the microsecond.
    #[serde(
        rename = "resumed_after_up_ms",
        serialize_with = "optional_fractional_millis"
    )]
    pub resumed_after_up: Option<Duration>,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// Where the manifest came from: a mirror's name, or "local cache" (`get`).
    pub manifest_from: Option<String>,
    /// How new chunks were stored, like "zstd-3", or "none" (`put`).
    pub encoding: Option<String>,
    /// The link's bandwidth `compression = "auto"` chose the encoding for, in bytes per
    /// second, when it was known (`put`).
    pub link_bytes_per_sec: Option<f64>,
    /// How long writing the bandwidth object took, when `put` wrote it (its bytes are
    /// not in `bytes_moved`, which is the artifact's).
    #[serde(
        rename = "bandwidth_object_write_ms",
        serialize_with = "optional_millis"
    )]
    pub bandwidth_object_write: Option<Duration>,
}

/// One mirror's share of a transfer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorTally {
    pub bytes: u64,
    pub chunks: usize,
    pub failures: u32,
    /// Requests that move data (packs, ranges of them, chunk objects and manifests) sent to it.
    pub requests: u64,
    /// Of those, how many it served: the object arrived and passed its checks, or was stored.
    pub served: u64,
    /// How long at least one of those requests was in flight: `bytes` over it is the speed
    /// the transfer saw.
    #[serde(rename = "busy_ms", serialize_with = "millis")]
    pub busy: Duration,
}

impl MirrorTally {
    /// Bytes per second while busy, if anything was moved.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        (self.bytes > 0 && !self.busy.is_zero())
            .then(|| self.bytes as f64 / self.busy.as_secs_f64())
    }
}

fn whole_millis(d: &Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as whole milliseconds, for the `_ms` fields of the JSON summaries.
pub(super) fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(whole_millis(d))
}

fn optional_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis(d, s),
        None => s.serialize_none(),
    }
}

fn optional_fractional_millis<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3),
        None => s.serialize_none(),
    }
}

impl Summary {
    /// Adds what one request's retries waited for the network: the longest wait is the
    /// transfer's (requests wait together), and with it how soon that request resumed.
    pub(crate) fn add_waits(&mut self, report: &netwatch_client::retry::RetryReport) {
        if report.network_wait >= self.network_wait {
            self.network_wait = report.network_wait;
            if let Some(resumed) = &report.resumed {
                self.resumed_after_up = Some(Duration::from_nanos(
                    resumed
                        .monotonic_ns
                        .saturating_sub(resumed.verdict.since_ns),
                ));
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        self.bytes_reused = self.bytes_reused.min(self.artifact_bytes);
        self.delta_savings = if self.artifact_bytes == 0 {
            0.0
        } else {
            self.bytes_reused as f64 / self.artifact_bytes as f64
        };
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "{} {}: {:.2} MiB moved for a {:.2} MiB artifact ({} of {} chunks; {:.1}% reused)",
            self.operation,
            self.key,
            mib(self.bytes_moved),
            mib(self.artifact_bytes),
            self.chunks_moved,
            self.chunks,
            self.delta_savings * 100.0
        )?;
        if let Some(encoding) = &self.encoding {
            write!(f, "  new chunks stored as {encoding}")?;
            match self.link_bytes_per_sec {
                Some(rate) => writeln!(f, " (for a link of {:.1} MiB/s)", mib(rate as u64))?,
                None => writeln!(f)?,
            }
        }
        for (name, tally) in &self.mirrors {
            write!(
                f,
                "  mirror {name}: {:.2} MiB, {} chunks, {} failures",
                mib(tally.bytes),
                tally.chunks,
                tally.failures
            )?;
            match tally.bytes_per_sec() {
                Some(rate) => writeln!(f, ", {:.1} MiB/s", mib(rate as u64))?,
                None => writeln!(f)?,
            }
        }
        write_costs(f, self.retries, self.network_wait, self.elapsed)?;
        if let Some(resumed) = self.resumed_after_up {
            write!(
                f,
                " (resumed {:.1} ms after the agent called the network Up)",
                resumed.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

/// The closing line of a put's, a get's and a sync's summary.
pub(super) fn write_costs(
    f: &mut fmt::Formatter<'_>,
    retries: u32,
    network_wait: Duration,
    elapsed: Duration,
) -> fmt::Result {
    // To the millisecond: humantime would print every nanosecond.
    let round = |d: Duration| Duration::from_millis(whole_millis(&d));
    write!(
        f,
        "  {retries} retries, {} waiting for the network, {} in all",
        humantime::format_duration(round(network_wait)),
        humantime::format_duration(round(elapsed))
    )
}
