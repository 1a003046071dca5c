//! A TCP proxy that delays every byte by a fixed time each way: the round-trip time of a far
//! mirror, where this kernel has no netem. Each direction is a delay line: a reader stamps
//! what it reads, a writer sends it once its time has come. The line holds at most
//! [`LINE_BYTES`] (more than a 100 Mbit/s link carries in 50 ms), so a sender meets
//! backpressure as it would from a full path.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::proxy::Forwarder;
use crate::netns::NetNs;
use anyhow::Result;

const STEP: usize = 16 * 1024;
/// In flight per direction: 2 MiB.
const LINE_BYTES: usize = 2 << 20;

/// A proxy that delays both directions.
pub struct DelayProxy;

impl DelayProxy {
    /// Forwards `listen` to `upstream`, each direction `one_way` late.
    pub fn start(
        ns: &NetNs,
        listen: SocketAddr,
        upstream: SocketAddr,
        one_way: Duration,
    ) -> Result<Forwarder> {
        Forwarder::start(ns, listen, upstream, move |client, server| {
            relay(client, server, one_way)
        })
    }
}

fn relay(client: TcpStream, server: TcpStream, one_way: Duration) {
    let _ = client.set_nonblocking(false);
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    delay_line(client_in, server, one_way);
    delay_line(server_in, client, one_way);
}

/// What `from` sends reaches `to` `delay` later; `to` is shut for writing when `from` ends.
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (line, arrivals) = mpsc::sync_channel::<(Instant, Vec<u8>)>(LINE_BYTES / STEP);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; STEP];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if line
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in arrivals {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
