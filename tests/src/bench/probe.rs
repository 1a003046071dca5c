//! The original design's check, run for real: a TCP connect to the endpoint every 10 s with
//! a 3 s timeout, from inside the watched namespace.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

use crate::clock::now_ns;
use crate::history::History;
use crate::worker::Worker;

pub const PROBE_EVERY: Duration = Duration::from_secs(10);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probe outcomes, stamped when each connect finished (the moment the loop would act).
pub struct ProbeLoop {
    pub outcomes: History<bool>,
    _worker: Worker<()>,
}

impl ProbeLoop {
    pub fn start(ns: &NetNs, target: SocketAddr, limit: Duration) -> Self {
        let outcomes = History::new();
        let history = outcomes.clone();
        let worker = Worker::spawn_in(ns, "probe-loop", move |stop| {
            let deadline = Instant::now() + limit;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let ok = TcpStream::connect_timeout(&target, PROBE_TIMEOUT).is_ok();
                history.push(now_ns(), ok);
                next += PROBE_EVERY;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            history.close();
        });
        ProbeLoop {
            outcomes,
            _worker: worker,
        }
    }
}
