//! Reads the kernel's events from the ring buffer as they arrive: TCP trouble, and links
//! that start receiving again.
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
use netwatch_common::{Event, EventKind};
use tokio::io::unix::AsyncFd;

use super::counters::ip_addr;

/// How soon to look again after a batch, for events that were written without a wake-up.
const FOLLOW_UP: Duration = Duration::from_millis(5);

/// One event from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSignal {
    Tcp(TcpSignal),
    /// The interface received a packet after a second or more of silence.
    RxResumed {
        ifindex: u32,
        at_ns: u64,
    },
}

/// One TCP signal from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSignal {
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds when the kernel saw it.
    pub at_ns: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl TcpSignal {
    pub fn from_event(event: &Event) -> Option<Self> {
        let local = ip_addr(event.family, &event.saddr)?;
        let remote = ip_addr(event.family, &event.daddr)?;
        Some(Self {
            kind: EventKind::from_u8(event.kind)?,
            at_ns: event.ts_ns,
            local: SocketAddr::new(local, event.sport),
            remote: SocketAddr::new(remote, event.dport),
        })
    }

    pub fn remote_ip(&self) -> IpAddr {
        self.remote.ip()
    }
}

/// The ring buffer, as an async source of [`KernelSignal`] batches.
pub struct KernelEvents {
    ring: AsyncFd<RingBuf<MapData>>,
    events_flowing: bool,
}

impl KernelEvents {
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
    pub async fn next_batch(&mut self, out: &mut Vec<KernelSignal>) -> std::io::Result<()> {
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

fn parse(bytes: &[u8]) -> Option<KernelSignal> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: Event is plain old data, valid for any bytes; the length was checked and
    // read_unaligned makes no alignment assumption.
    let event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) };
    match EventKind::from_u8(event.kind)? {
        EventKind::RxResumed => Some(KernelSignal::RxResumed {
            ifindex: event.ifindex,
            at_ns: event.ts_ns,
        }),
        _ => TcpSignal::from_event(&event).map(KernelSignal::Tcp),
    }
}
