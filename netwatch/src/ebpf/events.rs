//! Reads the kernel's TCP events from the ring buffer as they arrive.
//!
//! The kernel wakes this reader only on the first event after a quiet spell (see
//! netwatch-ebpf's events.rs); events written without a wake-up are collected by a short
//! follow-up read, repeated while events keep coming, so no event waits long and an idle
//! host costs no wake-ups at all.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use netwatch_common::{TcpEvent, TcpEventKind};
use tokio::io::unix::AsyncFd;

use super::counters::ip_addr;

/// How soon to look again after a batch, for events that were written without a wake-up.
const FOLLOW_UP: Duration = Duration::from_millis(5);

/// One TCP signal from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSignal {
    pub kind: TcpEventKind,
    /// CLOCK_MONOTONIC nanoseconds when the kernel saw it.
    pub at_ns: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl TcpSignal {
    pub fn from_event(event: &TcpEvent) -> Option<Self> {
        let local = ip_addr(event.family, &event.saddr)?;
        let remote = ip_addr(event.family, &event.daddr)?;
        Some(Self {
            kind: TcpEventKind::from_u8(event.kind)?,
            at_ns: event.ts_ns,
            local: SocketAddr::new(local, event.sport),
            remote: SocketAddr::new(remote, event.dport),
        })
    }

    pub fn remote_ip(&self) -> IpAddr {
        self.remote.ip()
    }
}

/// The ring buffer, as an async source of [`TcpSignal`] batches.
pub struct TcpEvents {
    ring: AsyncFd<RingBuf<MapData>>,
    events_flowing: bool,
}

impl TcpEvents {
    pub(super) fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its map's fd, which stays open and the same for as long as
        // the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            ring,
            events_flowing: false,
        })
    }

    /// Waits for the next non-empty batch and appends it to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<TcpSignal>) -> std::io::Result<()> {
        let before = out.len();
        loop {
            if self.events_flowing {
                tokio::select! {
                    ready = self.ring.readable_mut() => ready?.clear_ready(),
                    () = tokio::time::sleep(FOLLOW_UP) => {}
                }
            } else {
                self.ring.readable_mut().await?.clear_ready();
            }
            let ring = self.ring.get_mut();
            while let Some(item) = ring.next() {
                if let Some(signal) = parse(&item) {
                    out.push(signal);
                }
            }
            self.events_flowing = out.len() > before;
            if self.events_flowing {
                return Ok(());
            }
        }
    }
}

fn parse(bytes: &[u8]) -> Option<TcpSignal> {
    if bytes.len() < size_of::<TcpEvent>() {
        return None;
    }
    // SAFETY: TcpEvent is plain old data, valid for any bytes; the length was checked and
    // read_unaligned makes no alignment assumption.
    let event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TcpEvent>()) };
    TcpSignal::from_event(&event)
}
