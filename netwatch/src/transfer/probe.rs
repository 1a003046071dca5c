//! Whether each mirror answers a cheap request, and how fast: what `netwatch mirrors` shows
//! until mirrors are scored on observed transfers.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use super::MirrorStore;

/// How long a probe may take: a mirror slower than this to answer a HEAD is no mirror to use.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One mirror's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MirrorProbe {
    pub name: String,
    pub url: String,
    /// The round trip of the request, when it was answered.
    pub latency_ms: Option<f64>,
    /// Why it was not, otherwise.
    pub error: Option<String>,
}

/// Probes every mirror at once.
pub async fn probe(mirrors: &[MirrorStore]) -> Vec<MirrorProbe> {
    join_all(mirrors.iter().map(|mirror| async move {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, mirror.probe()).await;
        let (latency_ms, error) = match outcome {
            Ok(Ok(latency)) => (Some(latency.as_secs_f64() * 1000.0), None),
            Ok(Err(error)) => (None, Some(error.to_string())),
            Err(_) => (
                None,
                Some(format!(
                    "no answer within {}",
                    humantime::format_duration(PROBE_TIMEOUT)
                )),
            ),
        };
        MirrorProbe {
            name: mirror.name().to_string(),
            url: mirror.url().to_string(),
            latency_ms,
            error,
        }
    }))
    .await
}
