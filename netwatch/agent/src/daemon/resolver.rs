//! Resolves endpoints given by host name in the background, and again periodically: the
//! agent starts and judges everything else while DNS is down, which is when a network
//! monitor is most needed. Only names a user configured are looked up.

use std::{net::SocketAddr, time::Duration};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::tracker::Resolved;

/// How often a resolved name is looked up again (an address can move).
const REFRESH: Duration = Duration::from_secs(60);
/// How soon a failed look-up is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// The longest one look-up may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Looks up `host:port` for endpoint `name` until `results` is closed, sending each outcome.
pub fn spawn(name: String, host: String, port: u16, results: mpsc::Sender<(String, Resolved)>) {
    tokio::spawn(async move {
        let mut last: Option<Result<SocketAddr, String>> = None;
        loop {
            let outcome = lookup(&host, port).await;
            let wait = if outcome.is_ok() { REFRESH } else { RETRY };
            if last.as_ref() != Some(&outcome) {
                match &outcome {
                    Ok(addr) => {
                        info!(endpoint = %name, %host, address = %addr, "endpoint resolved")
                    }
                    Err(e) => {
                        warn!(endpoint = %name, %host, error = %e, retry_in_s = RETRY.as_secs(), "cannot resolve endpoint; it stays unknown until it resolves")
                    }
                }
            }
            let resolved = match &outcome {
                Ok(addr) => Resolved::Address(*addr),
                Err(e) => Resolved::Pending(format!(
                    "cannot resolve {host}: {e}; retrying every {}s",
                    RETRY.as_secs()
                )),
            };
            last = Some(outcome);
            if results.send((name.clone(), resolved)).await.is_err() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    });
}

async fn lookup(host: &str, port: u16) -> Result<SocketAddr, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| "no address found".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs())),
    }
}
