//! Measuring mirrors: latency as the round trip of a cheap request (a HEAD), bandwidth as a
//! timed ranged read of the bandwidth object that `put` leaves on every mirror it writes to.

use std::{ops::Range, sync::OnceLock, time::Duration};

use futures::future::join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::{MirrorStore, StoreError};

/// How long a measurement's HEAD may take: a mirror slower than this to answer is no mirror to use.
pub const MEASURE_TIMEOUT: Duration = Duration::from_secs(5);
/// The bandwidth object's size: larger than the range read, so that a server that ignores
/// `Range` shows itself by sending more.
pub const BANDWIDTH_OBJECT_SIZE: u64 = 2 << 20;
/// The part of the bandwidth object a bandwidth measurement reads: 1 MiB from an offset, so that
/// a server answering from the object's start is caught by the bytes.
pub const MEASURE_RANGE: Range<u64> = (512 << 10)..(1536 << 10);

/// How long a measurement may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeasureLimits {
    /// For the HEAD, and for the ranged read's answer to begin.
    pub answer: Duration,
    /// For the ranged read's body: a slow link is measured on what arrives by then.
    pub body: Duration,
}

impl MeasureLimits {
    /// `netwatch mirrors`: someone asked, so wait long enough to get an answer.
    pub const FULL: Self = Self {
        answer: MEASURE_TIMEOUT,
        body: Duration::from_secs(3),
    };
    /// Before a `get`: the transfer is waiting, and the scoreboard only needs a fresh figure.
    pub const QUICK: Self = Self {
        answer: Duration::from_secs(2),
        body: Duration::from_secs(1),
    };
}

/// One mirror's measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MirrorMeasurement {
    pub name: String,
    pub url: String,
    /// The round trip of the HEAD, when it was answered.
    pub latency_ms: Option<f64>,
    /// Why it was not, otherwise.
    pub error: Option<String>,
    /// Bytes per second over the ranged read; `None` without a bandwidth object, or when the
    /// read failed.
    pub bandwidth_bytes_per_sec: Option<f64>,
    /// Why the ranged read failed (an ignored `Range`, wrong bytes, no data in time). A
    /// missing bandwidth object is no error: bandwidth is then unknown until observed.
    pub bandwidth_error: Option<String>,
}

/// Measures every mirror at once with the full limits.
pub async fn measure_mirrors(mirrors: &[MirrorStore]) -> Vec<MirrorMeasurement> {
    measure_mirrors_with(mirrors, MeasureLimits::FULL).await
}

/// Measures every mirror at once: each a HEAD, then, if answered, a ranged read.
pub async fn measure_mirrors_with(
    mirrors: &[MirrorStore],
    limits: MeasureLimits,
) -> Vec<MirrorMeasurement> {
    join_all(mirrors.iter().map(|mirror| measure_one(mirror, limits))).await
}

async fn measure_one(mirror: &MirrorStore, limits: MeasureLimits) -> MirrorMeasurement {
    let mut measured = MirrorMeasurement {
        name: mirror.name().to_string(),
        url: mirror.url().to_string(),
        latency_ms: None,
        error: None,
        bandwidth_bytes_per_sec: None,
        bandwidth_error: None,
    };
    let no_answer = |limit| format!("no answer within {}", humantime::format_duration(limit));
    let latency = match tokio::time::timeout(limits.answer, mirror.answer_time()).await {
        Ok(Ok(latency)) => latency,
        Ok(Err(error)) => {
            measured.error = Some(error.to_string());
            return measured;
        }
        Err(_) => {
            measured.error = Some(no_answer(limits.answer));
            return measured;
        }
    };
    measured.latency_ms = Some(latency.as_secs_f64() * 1000.0);
    let read = mirror.read_bandwidth_range(MEASURE_RANGE, limits.body);
    match tokio::time::timeout(limits.answer, read).await {
        Ok(Ok(read)) => match bandwidth(&read, latency) {
            Ok(rate) => measured.bandwidth_bytes_per_sec = Some(rate),
            Err(problem) => {
                measured.bandwidth_error = Some(format!(
                    "bandwidth: {}: {problem}",
                    crate::store::BANDWIDTH_OBJECT
                ))
            }
        },
        Ok(Err(error)) if error.is_not_found() => {}
        Ok(Err(error)) => measured.bandwidth_error = Some(format!("bandwidth: {error}")),
        Err(_) => {
            measured.bandwidth_error = Some(format!("bandwidth: {}", no_answer(limits.answer)));
        }
    }
    measured
}

/// Bytes per second of a ranged read whose bytes are checked against the bandwidth object. The
/// time is from the request to the last byte less one round trip (the HEAD's), which is
/// what asking cost rather than moving; never less than the body's own time.
fn bandwidth(read: &crate::store::RangeRead, round_trip: Duration) -> Result<f64, String> {
    if read.data.is_empty() {
        return Err("no byte arrived in time".to_string());
    }
    let start = MEASURE_RANGE.start as usize;
    let expected = bandwidth_object()
        .get(start..start + read.data.len())
        .ok_or("more bytes than the bandwidth object has")?;
    if read.data != expected {
        return Err(
            "the bytes are not the bandwidth object's (a proxy altering them, or a server that \
             ignores the range's offset); delete the object and put an artifact to write it again"
                .to_string(),
        );
    }
    let moving = (read.first_byte + read.body)
        .saturating_sub(round_trip)
        .max(read.body)
        .max(Duration::from_micros(1));
    Ok(read.data.len() as f64 / moving.as_secs_f64())
}

/// The bandwidth object's bytes: SplitMix64 from a fixed seed, written out here so that they
/// stay the same across versions. Incompressible, so that nothing on the way (an HTTP
/// proxy's gzip) makes the link look faster than it is.
pub fn bandwidth_object() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut state: u64 = 0x6e65_7477_6174_6368; // "netwatch"
        let mut bytes = Vec::with_capacity(BANDWIDTH_OBJECT_SIZE as usize);
        while bytes.len() < BANDWIDTH_OBJECT_SIZE as usize {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        bytes
    })
}

/// Writes the bandwidth object to `mirror` unless it is there at its size. `Some(time taken)`
/// when it was written now: an upload of `BANDWIDTH_OBJECT_SIZE` bytes, itself a measure of the
/// link.
pub async fn ensure_bandwidth_object(mirror: &MirrorStore) -> Result<Option<Duration>, StoreError> {
    if mirror.bandwidth_object_size().await? == Some(BANDWIDTH_OBJECT_SIZE) {
        return Ok(None);
    }
    let started = Instant::now();
    mirror
        .put_bandwidth_object(bandwidth_object().to_vec())
        .await?;
    Ok(Some(started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, MirrorUrl};

    fn mirror(dir: &std::path::Path, access: Access) -> MirrorStore {
        let url: MirrorUrl = format!("file://{}", dir.display()).parse().unwrap();
        MirrorStore::open("m", &url, access).unwrap()
    }

    #[test]
    fn the_bandwidth_object_is_fixed_and_incompressible() {
        let bytes = bandwidth_object();
        assert_eq!(bytes.len() as u64, BANDWIDTH_OBJECT_SIZE);
        // The first output of SplitMix64 from this seed: changing it breaks every mirror's
        // existing bandwidth object.
        assert_eq!(&bytes[..8], &0x133d_04d6_657e_c10e_u64.to_le_bytes());
        let packed = zstd::bulk::compress(bytes, 3).unwrap();
        assert!(packed.len() as u64 > BANDWIDTH_OBJECT_SIZE * 99 / 100);
    }

    #[tokio::test]
    async fn a_file_mirror_is_measured_after_put_writes_the_bandwidth_object() {
        let dir = tempfile::tempdir().unwrap();
        let writer = mirror(dir.path(), Access::Write);
        let before = measure_mirrors(std::slice::from_ref(&writer)).await;
        assert!(before[0].latency_ms.is_some(), "{before:?}");
        assert_eq!(before[0].bandwidth_bytes_per_sec, None);
        assert_eq!(
            before[0].bandwidth_error, None,
            "no bandwidth object is no error"
        );

        assert!(ensure_bandwidth_object(&writer).await.unwrap().is_some());
        assert_eq!(ensure_bandwidth_object(&writer).await.unwrap(), None);
        let after = measure_mirrors(&[mirror(dir.path(), Access::Read)]).await;
        assert!(after[0].bandwidth_bytes_per_sec.unwrap() > 0.0, "{after:?}");
        assert_eq!(after[0].error, None);
        assert_eq!(after[0].bandwidth_error, None);
    }

    #[tokio::test]
    async fn the_ranged_read_returns_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(dir.path(), Access::Write);
        ensure_bandwidth_object(&m).await.unwrap();
        let read = m
            .read_bandwidth_range(100..1100, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(read.data, &bandwidth_object()[100..1100]);
    }

    #[tokio::test]
    async fn altered_or_missing_bytes_are_reported_not_measured() {
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(dir.path(), Access::Write);
        let mut altered = bandwidth_object().to_vec();
        altered[MEASURE_RANGE.start as usize + 10] ^= 1;
        m.put_bandwidth_object(altered).await.unwrap();
        let measured = measure_mirrors(std::slice::from_ref(&m)).await;
        assert_eq!(measured[0].bandwidth_bytes_per_sec, None);
        let error = measured[0].bandwidth_error.as_deref().unwrap();
        assert!(error.contains("not the bandwidth object's"), "{error}");
        // A wrong size is written again by put.
        assert!(ensure_bandwidth_object(&m).await.unwrap().is_none());
        m.put_bandwidth_object(vec![0; 10]).await.unwrap();
        assert!(ensure_bandwidth_object(&m).await.unwrap().is_some());
    }

    #[test]
    fn bandwidth_is_bytes_over_the_time_less_a_round_trip() {
        let start = MEASURE_RANGE.start as usize;
        let read = crate::store::RangeRead {
            data: bandwidth_object()[start..start + 1_000_000].to_vec(),
            first_byte: Duration::from_millis(20),
            body: Duration::from_millis(990),
        };
        // 1010 ms less the 10 ms round trip: 1 MB/s.
        let rate = bandwidth(&read, Duration::from_millis(10)).unwrap();
        assert!((rate - 1_000_000.0).abs() < 1.0, "{rate}");
        // Never faster than the body alone allows.
        let rate = bandwidth(&read, Duration::from_secs(5)).unwrap();
        assert!((rate - 1_000_000.0 / 0.99).abs() < 1.0, "{rate}");
        let empty = crate::store::RangeRead {
            data: Vec::new(),
            ..read
        };
        assert!(bandwidth(&empty, Duration::ZERO).is_err());
    }
}
