//! Active probes, only for endpoints a user configured with probing on: a TCP connect every
//! interval, bounded by a timeout. Nothing is probed by default, nor before the endpoint's
//! name resolves.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
};

use crate::{ebpf::monotonic_ns, state::ProbeResult};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub interval: Duration,
    pub timeout: Duration,
}

/// KernelPrograms the address `address` holds (none yet: no probe) until the receiver is dropped,
/// sending each result tagged with `name`.
pub fn spawn(
    name: String,
    mut address: watch::Receiver<Option<SocketAddr>>,
    spec: ProbeSpec,
    results: mpsc::Sender<(String, ProbeResult)>,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(spec.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(target) = *address.borrow_and_update() else {
                if address.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let error = match tokio::time::timeout(spec.timeout, TcpStream::connect(target)).await {
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
    });
}
