//! Counts every received packet per interface, and per source address for the sources
//! userspace watches. Always passes the packet on.

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    programs::XdpContext,
};
use netwatch_common::{
    DestKey, Event, EventKind, IfaceCounters, AF_INET, AF_INET6, RX_RESUMED_AFTER_NS,
};

use crate::{
    events,
    maps::{peers_watched, IFACE_COUNTERS, IFACE_SLOTS, WATCHED_PEERS},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// Source address offsets within the IPv4 and IPv6 headers.
const IPV4_SADDR: usize = 12;
const IPV6_SADDR: usize = 8;

#[inline(always)]
pub fn count_packet(ctx: &XdpContext) {
    let ifindex = ctx.ingress_ifindex() as u32;
    // The program is not frags-aware, so the kernel hands it linear packets: this is the
    // whole length, Ethernet header included, as the device's own rx_bytes counts it.
    let bytes = (ctx.data_end() - ctx.data()) as u64;
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
        count_watched_source(ctx);
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
fn count_watched_source(ctx: &XdpContext) {
    let Some(source) = source_of(ctx) else {
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

/// The IPv4 or IPv6 source address, behind at most one VLAN tag.
#[inline(always)]
fn source_of(ctx: &XdpContext) -> Option<DestKey> {
    let mut ethertype = u16::from_be(read::<u16>(ctx, 12)?);
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = u16::from_be(read::<u16>(ctx, 16)?);
        l3 += 4;
    }
    let mut key = DestKey {
        family: 0,
        _pad: 0,
        addr: [0; 16],
    };
    match ethertype {
        ETH_P_IP => {
            key.family = AF_INET;
            let v4 = read::<[u8; 4]>(ctx, l3 + IPV4_SADDR)?;
            key.addr[..4].copy_from_slice(&v4);
        }
        ETH_P_IPV6 => {
            key.family = AF_INET6;
            key.addr = read::<[u8; 16]>(ctx, l3 + IPV6_SADDR)?;
        }
        _ => return None,
    }
    Some(key)
}

/// The one place packet bytes are read: bounds-checked against the packet's end, as the
/// verifier requires.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(unsafe { core::ptr::read_unaligned(start as *const T) })
}
