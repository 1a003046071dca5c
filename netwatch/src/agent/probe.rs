//! Active probes, only for endpoints a user configured with probing on: a TCP connect every
//! interval, bounded by a timeout. Nothing is probed by default.

use std::{net::SocketAddr, time::Duration};

use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle};

use crate::{ebpf::monotonic_ns, state::ProbeResult};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Probes `address` until the receiver is dropped, sending each result tagged with `name`.
pub fn spawn(
    name: String,
    address: SocketAddr,
    spec: ProbeSpec,
    results: mpsc::Sender<(String, ProbeResult)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(spec.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let error = match tokio::time::timeout(spec.timeout, TcpStream::connect(address)).await
            {
                Ok(Ok(_connected)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {:?}", spec.timeout)),
            };
            let result = ProbeResult {
                at_ns: monotonic_ns(),
                error,
            };
            if results.send((name.clone(), result)).await.is_err() {
                return;
            }
        }
    })
}
