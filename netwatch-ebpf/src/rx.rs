//! Counts every received packet per interface, and per source address for the sources
//! userspace watches, from whichever receive hook the agent chose (`xdp.rs`, `ingress.rs`).
//! Never changes or drops a packet.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use netwatch_common::{DestKey, Event, EventKind, IfaceCounters, RX_RESUMED_AFTER_NS};

use crate::{
    events,
    maps::{peers_watched, IFACE_COUNTERS, IFACE_SLOTS, WATCHED_PEERS},
};

/// A received packet as one hook sees it.
pub trait Received {
    /// The interface it arrived on.
    fn ifindex(&self) -> u32;
    /// Its length, Ethernet header included, as the device's own rx_bytes counts it.
    fn len(&self) -> u64;
    /// Its IPv4 or IPv6 source address; `None` for other protocols or a short packet.
    fn source(&self) -> Option<DestKey>;
}

#[inline(always)]
pub fn count_packet<P: Received>(packet: &P) {
    let ifindex = packet.ifindex();
    let bytes = packet.len();
    // The coarse clock (to the tick) is enough to pace a link, and a precise read would cost
    // more than the rest of the program; userspace dates it late by a tick (counters.rs).
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // A slot of the array when the ifindex has one (its counters start at zero, so the first
    // packet reads as reception resuming), else the hash.
    let counters = IFACE_SLOTS
        .get_ptr_mut(ifindex)
        .or_else(|| IFACE_COUNTERS.get_ptr_mut(ifindex));
    match counters {
        Some(counters) => unsafe {
            if now.wrapping_sub((*counters).last_rx_ns) >= RX_RESUMED_AFTER_NS {
                rx_resumed(ifindex, now);
            }
            (*counters).packets += 1;
            (*counters).bytes += bytes;
            (*counters).last_rx_ns = now;
        },
        None => {
            let first = IfaceCounters {
                packets: 1,
                bytes,
                last_rx_ns: now,
            };
            // Failure means the map is full; the packet still passes and userspace sees the
            // interface through netlink alone.
            let _ = IFACE_COUNTERS.insert(ifindex, first, 0);
            rx_resumed(ifindex, now);
        }
    }
    if peers_watched() {
        count_watched_source(packet);
    }
}

/// Tells userspace that a silent interface receives again, so it can watch its pace (the
/// fast path for carrier loss needs to know what "quiet" means for this link).
#[inline(always)]
fn rx_resumed(ifindex: u32, now: u64) {
    let event = Event {
        ts_ns: now,
        ifindex,
        kind: EventKind::RxResumed as u8,
        ..Event::default()
    };
    events::send(&event, true);
}

#[inline(always)]
fn count_watched_source<P: Received>(packet: &P) {
    let Some(source) = packet.source() else {
        return;
    };
    if let Some(counters) = WATCHED_PEERS.get_ptr_mut(&source) {
        unsafe {
            (*counters).rx_packets += 1;
            // Precise: an endpoint's reply is weighed against the request it answers.
            (*counters).last_rx_ns = bpf_ktime_get_ns();
        }
    }
}
