//! The scoreboard: what is known of each mirror's speed and reliability, kept between runs
//! in `<cache>/mirrors.json`: latency from the last measurement, bandwidth as a moving
//! average of measurements and observed transfers, and the share of requests it served.

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    measure::{measure_mirrors_with, MeasureLimits, MirrorMeasurement, BANDWIDTH_OBJECT_SIZE},
    score::{rank, scores, Candidate, Figures, Standing},
    MirrorStore, Summary,
};
use netwatch_client::state::{Health, NetworkState};

/// The file under the cache directory.
pub const SCOREBOARD_FILE: &str = "mirrors.json";
/// A measurement older than this is taken again before a `get`.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);
/// The weight of a new bandwidth figure in the moving average.
const NEW_WEIGHT: f64 = 0.5;
/// Less than this moved in a transfer says more about latency than bandwidth: not used.
const MIN_OBSERVED_BYTES: u64 = 1 << 20;
/// Requests counted before the hit rate halves its counts, so that it follows the mirror's
/// recent behaviour rather than its whole history.
const HIT_WINDOW: u64 = 1000;
const FORMAT: u32 = 1;

/// Tells apart the temporary files of saves in one process.
static NEXT_TEMP: AtomicU32 = AtomicU32::new(0);

/// One mirror's figures. A mirror is its name and URL: a changed URL starts afresh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub url: String,
    pub latency_ms: Option<f64>,
    pub bandwidth_bytes_per_sec: Option<f64>,
    /// Objects it served, of `requests` asked of it.
    pub hits: u64,
    pub requests: u64,
    /// When it was last measured, in Unix milliseconds.
    pub measured_unix_ms: Option<u64>,
    /// Why the last measurement got no answer.
    pub error: Option<String>,
    /// Why the last bandwidth measurement failed.
    pub bandwidth_error: Option<String>,
}

impl Entry {
    /// `hits / requests`, once anything was asked.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.hits as f64 / self.requests as f64)
    }

    fn average_bandwidth(&mut self, observed: f64) {
        if !(observed.is_finite() && observed > 0.0) {
            return;
        }
        self.bandwidth_bytes_per_sec = Some(match self.bandwidth_bytes_per_sec {
            Some(old) => NEW_WEIGHT * observed + (1.0 - NEW_WEIGHT) * old,
            None => observed,
        });
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    mirrors: Vec<Entry>,
}

/// The scoreboard, loaded from its file (or empty) and written back with `save`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scoreboard {
    path: Option<PathBuf>,
    entries: Vec<Entry>,
}

/// The scoreboard could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the mirror scoreboard {}: {source}", path.display())]
pub struct ScoreboardError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A mirror's place in the rank, with what decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Its index in the mirrors ranked.
    pub index: usize,
    pub standing: Standing,
    pub score: Option<f64>,
    /// Its endpoint's verdict, when it has one and the state knows it.
    pub health: Option<Health>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Scoreboard {
    /// A scoreboard that is never written: without a cache directory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The scoreboard in `cache_root`. A missing file is an empty scoreboard; one that cannot
    /// be read or understood is reported and ignored (and replaced at the next save): it only
    /// ever holds figures that the next measurement gives again.
    pub fn load(cache_root: &Path) -> Self {
        let path = cache_root.join(SCOREBOARD_FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) if stored.format == FORMAT => stored.mirrors,
                Ok(stored) => {
                    tracing::warn!(path = %path.display(), format = stored.format, "ignoring the mirror scoreboard: another version of netwatch wrote it; it will be replaced");
                    Vec::new()
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring the mirror scoreboard: it is not valid; it will be replaced");
                    Vec::new()
                }
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring the mirror scoreboard: it cannot be read");
                Vec::new()
            }
        };
        Self {
            path: Some(path),
            entries,
        }
    }

    /// [`Scoreboard::save`], where a failure costs only figures: a warning.
    pub fn save_or_warn(&self) {
        if let Err(error) = self.save() {
            tracing::warn!("{error}");
        }
    }

    /// Writes the file whole: a temporary file beside it, then a rename, so that a reader
    /// (another netwatch) sees the old scoreboard or the new one.
    pub fn save(&self) -> Result<(), ScoreboardError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail = |source| ScoreboardError {
            path: path.clone(),
            source,
        };
        let stored = Stored {
            format: FORMAT,
            mirrors: self.entries.clone(),
        };
        let json = serde_json::to_vec_pretty(&stored).expect("figures always serialise");
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let temp = dir.join(format!(
            ".{SCOREBOARD_FILE}.{}-{}.tmp",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::write(&temp, json).and_then(|()| std::fs::rename(&temp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(fail)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The figures of `mirror`, by name and URL.
    pub fn entry(&self, mirror: &MirrorStore) -> Option<&Entry> {
        let url = mirror.url().to_string();
        self.entries
            .iter()
            .find(|e| e.name == mirror.name() && e.url == url)
    }

    fn entry_mut(&mut self, name: &str, url: &str) -> &mut Entry {
        // A mirror renamed or moved starts afresh: its old figures were another place's.
        let at = match self.entries.iter().position(|e| e.name == name) {
            Some(at) if self.entries[at].url == url => at,
            Some(at) => {
                self.entries[at] = Entry {
                    name: name.to_string(),
                    url: url.to_string(),
                    ..Entry::default()
                };
                at
            }
            None => {
                self.entries.push(Entry {
                    name: name.to_string(),
                    url: url.to_string(),
                    ..Entry::default()
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[at]
    }

    /// Whether `mirror` was measured less than `max_age` ago.
    pub fn is_fresh(&self, mirror: &MirrorStore, max_age: Duration) -> bool {
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.entry(mirror)
            .and_then(|e| e.measured_unix_ms)
            .is_some_and(|at| now_unix_ms().saturating_sub(at) < max_age)
    }

    /// Records a measurement: the latency replaces the last, the bandwidth joins the average.
    pub fn record_measurement(&mut self, measured: &MirrorMeasurement) {
        let entry = self.entry_mut(&measured.name, &measured.url);
        entry.measured_unix_ms = Some(now_unix_ms());
        entry.error = measured.error.clone();
        entry.bandwidth_error = measured.bandwidth_error.clone();
        if measured.error.is_some() {
            entry.latency_ms = None;
            return;
        }
        entry.latency_ms = measured.latency_ms;
        if let Some(rate) = measured.bandwidth_bytes_per_sec {
            entry.average_bandwidth(rate);
        }
    }

    /// Records what a finished transfer saw: each mirror's speed while busy (if it moved
    /// enough to tell) and its requests served; for a `put` that wrote the bandwidth object, that
    /// upload's speed too.
    pub fn observe(&mut self, summary: &Summary, mirrors: &[MirrorStore]) {
        for mirror in mirrors {
            let Some(tally) = summary.mirrors.get(mirror.name()) else {
                continue;
            };
            let url = mirror.url().to_string();
            let entry = self.entry_mut(mirror.name(), &url);
            entry.hits += tally.served;
            entry.requests += tally.requests;
            while entry.requests > HIT_WINDOW {
                entry.hits /= 2;
                entry.requests /= 2;
            }
            if tally.bytes >= MIN_OBSERVED_BYTES {
                if let Some(rate) = tally.bytes_per_sec() {
                    entry.average_bandwidth(rate);
                }
            }
        }
        if let (Some(took), [mirror]) = (summary.bandwidth_object_write, mirrors) {
            self.record_object_write(mirror, took);
        }
    }

    /// Records the time writing the bandwidth object took: an upload of known size.
    pub fn record_object_write(&mut self, mirror: &MirrorStore, took: Duration) {
        if !took.is_zero() {
            let url = mirror.url().to_string();
            self.entry_mut(mirror.name(), &url)
                .average_bandwidth(BANDWIDTH_OBJECT_SIZE as f64 / took.as_secs_f64());
        }
    }

    /// Measures the mirrors whose figures are older than `max_age` (or absent), all at once.
    pub async fn refresh(
        &mut self,
        mirrors: &[MirrorStore],
        max_age: Duration,
        limits: MeasureLimits,
    ) {
        let stale: Vec<MirrorStore> = mirrors
            .iter()
            .filter(|m| !self.is_fresh(m, max_age))
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        tracing::debug!(mirrors = stale.len(), "measuring mirrors");
        for measured in measure_mirrors_with(&stale, limits).await {
            self.record_measurement(&measured);
        }
    }

    /// `mirrors` (in configured order) ranked: by standing (the endpoint's verdict in
    /// `state`, and whether the last measurement was answered), then score, then that order.
    pub fn ranked(&self, mirrors: &[MirrorStore], state: Option<&NetworkState>) -> Vec<Ranked> {
        let entries: Vec<Option<&Entry>> = mirrors.iter().map(|m| self.entry(m)).collect();
        let figures: Vec<Figures> = entries
            .iter()
            .map(|e| Figures {
                latency_ms: e.and_then(|e| e.latency_ms),
                bandwidth: e.and_then(|e| e.bandwidth_bytes_per_sec),
            })
            .collect();
        let scored = scores(&figures);
        let healths: Vec<Option<Health>> = mirrors
            .iter()
            .map(|m| {
                let endpoint = m.endpoint()?;
                Some(state?.endpoints.get(endpoint)?.verdict.health)
            })
            .collect();
        let candidates: Vec<Candidate> = (0..mirrors.len())
            .map(|i| Candidate {
                standing: Standing::of(healths[i], entries[i].is_none_or(|e| e.error.is_none())),
                score: scored[i],
            })
            .collect();
        rank(&candidates)
            .into_iter()
            .map(|index| Ranked {
                index,
                standing: candidates[index].standing,
                score: candidates[index].score,
                health: healths[index],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tests::network_state, Access, MirrorTally, MirrorUrl};

    fn mirror(dir: &Path, name: &str) -> MirrorStore {
        let url: MirrorUrl = format!("file://{}/{name}", dir.display()).parse().unwrap();
        MirrorStore::open(name, &url, Access::Write).unwrap()
    }

    fn measured(m: &MirrorStore, latency_ms: f64, bandwidth: Option<f64>) -> MirrorMeasurement {
        MirrorMeasurement {
            name: m.name().to_string(),
            url: m.url().to_string(),
            latency_ms: Some(latency_ms),
            error: None,
            bandwidth_bytes_per_sec: bandwidth,
            bandwidth_error: None,
        }
    }

    #[test]
    fn figures_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = mirror(dir.path(), "a");
        let mut board = Scoreboard::load(dir.path());
        assert!(board.entries().is_empty());
        board.record_measurement(&measured(&a, 2.5, Some(1e6)));
        board.save().unwrap();
        let loaded = Scoreboard::load(dir.path());
        assert_eq!(loaded, board);
        let entry = loaded.entry(&a).unwrap();
        assert_eq!(
            (entry.latency_ms, entry.bandwidth_bytes_per_sec),
            (Some(2.5), Some(1e6))
        );
        assert!(loaded.is_fresh(&a, STALE_AFTER));
        assert!(!loaded.is_fresh(&a, Duration::ZERO));
        // Nothing but the file is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(SCOREBOARD_FILE))
            .collect();
        assert_eq!(names, [SCOREBOARD_FILE]);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SCOREBOARD_FILE);
        for text in [
            "{\"format\": 1, \"mirrors\": [",
            "\u{0}\u{ff}",
            "{\"format\": 99, \"mirrors\": []}",
        ] {
            std::fs::write(&path, text).unwrap();
            let mut board = Scoreboard::load(dir.path());
            assert!(board.entries().is_empty(), "{text}");
            board.record_measurement(&measured(&mirror(dir.path(), "a"), 1.0, None));
            board.save().unwrap();
            assert_eq!(Scoreboard::load(dir.path()).entries().len(), 1);
        }
    }

    #[test]
    fn a_moved_mirror_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut board = Scoreboard::in_memory();
        let old = mirror(dir.path(), "a");
        board.record_measurement(&measured(&old, 1.0, Some(5e6)));
        let moved = MirrorStore::open(
            "a",
            &format!("file://{}/elsewhere", dir.path().display())
                .parse()
                .unwrap(),
            Access::Write,
        )
        .unwrap();
        assert_eq!(board.entry(&moved), None);
        board.record_measurement(&measured(&moved, 3.0, None));
        assert_eq!(board.entries().len(), 1);
        assert_eq!(board.entry(&moved).unwrap().bandwidth_bytes_per_sec, None);
        // In memory, saving writes nothing and fails nothing.
        board.save().unwrap();
    }

    #[test]
    fn transfers_feed_the_bandwidth_average_and_the_hit_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (mirror(dir.path(), "a"), mirror(dir.path(), "b"));
        let mut board = Scoreboard::in_memory();
        board.record_measurement(&measured(&a, 1.0, Some(10e6)));
        let mut summary = Summary {
            operation: "get",
            ..Summary::default()
        };
        summary.mirrors.insert(
            "a".into(),
            MirrorTally {
                bytes: 30 << 20,
                requests: 10,
                served: 9,
                busy: Duration::from_secs(1),
                ..MirrorTally::default()
            },
        );
        // Too little to say anything of bandwidth, but its requests count.
        summary.mirrors.insert(
            "b".into(),
            MirrorTally {
                bytes: 1000,
                requests: 1,
                served: 0,
                busy: Duration::from_millis(1),
                ..MirrorTally::default()
            },
        );
        board.observe(&summary, &[a.clone(), b.clone()]);
        let entry = board.entry(&a).unwrap();
        let expected = 0.5 * (30 << 20) as f64 + 0.5 * 10e6;
        assert!((entry.bandwidth_bytes_per_sec.unwrap() - expected).abs() < 1.0);
        assert_eq!(entry.hit_rate(), Some(0.9));
        let entry = board.entry(&b).unwrap();
        assert_eq!(entry.bandwidth_bytes_per_sec, None);
        assert_eq!(entry.hit_rate(), Some(0.0));
        // The counts halve past the window, keeping the rate.
        for _ in 0..200 {
            board.observe(&summary, std::slice::from_ref(&a));
        }
        let entry = board.entry(&a).unwrap();
        assert!(entry.requests <= HIT_WINDOW);
        assert!((entry.hit_rate().unwrap() - 0.9).abs() < 0.01);
    }

    #[test]
    fn the_rank_demotes_a_down_endpoint_and_an_unanswered_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let a = mirror(dir.path(), "a").with_endpoint(Some("ea".into()));
        let (b, c) = (mirror(dir.path(), "b"), mirror(dir.path(), "c"));
        let mut board = Scoreboard::in_memory();
        board.record_measurement(&measured(&a, 1.0, Some(100e6)));
        board.record_measurement(&measured(&b, 5.0, Some(10e6)));
        let mut failed = measured(&c, 1.0, None);
        (failed.latency_ms, failed.error) = (None, Some("refused".into()));
        board.record_measurement(&failed);
        let order = |state: Option<&NetworkState>| -> Vec<usize> {
            board
                .ranked(&[a.clone(), b.clone(), c.clone()], state)
                .iter()
                .map(|r| r.index)
                .collect()
        };
        assert_eq!(order(None), [0, 1, 2]);
        assert_eq!(
            order(Some(&network_state(&[("ea", Health::Up)]))),
            [0, 1, 2]
        );
        assert_eq!(
            order(Some(&network_state(&[("ea", Health::Degraded)]))),
            [1, 0, 2]
        );
        assert_eq!(
            order(Some(&network_state(&[("ea", Health::Down)]))),
            [1, 0, 2]
        );
        let ranked = board.ranked(
            std::slice::from_ref(&a),
            Some(&network_state(&[("ea", Health::Down)])),
        );
        assert_eq!(ranked[0].health, Some(Health::Down));
        assert_eq!(ranked[0].standing, Standing::Down);
    }
}
