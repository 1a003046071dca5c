//! Counts TCP segments carrying data as they leave each interface (tc egress), and per
//! watched peer: the loss ratio's denominator, and the evidence that something was sent
//! that deserves an answer. Reads headers only; never changes or drops a packet.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use netwatch_common::{DestKey, TxCounters, AF_INET, AF_INET6};

use crate::{
    maps::{peers_watched, IFACE_TX, WATCHED_PEERS},
    skb::load,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPV6_HLEN: u32 = 40;
/// Offset of the data-offset byte in the TCP header.
const TCP_DOFF: u32 = 12;

/// A TCP segment with data: where it goes and how many segments it becomes on the wire.
struct DataSent {
    dest: DestKey,
    segs: u64,
}

#[inline(always)]
pub fn count_tx(ctx: &TcContext) {
    let Some(sent) = data_sent(ctx) else {
        return;
    };
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let now = unsafe { bpf_ktime_get_ns() };
    match IFACE_TX.get_ptr_mut(&ifindex) {
        Some(counters) => unsafe {
            (*counters).data_segs += sent.segs;
            (*counters).data_buffers += 1;
            (*counters).last_data_ns = now;
        },
        None => {
            let first = TxCounters {
                data_segs: sent.segs,
                data_buffers: 1,
                last_data_ns: now,
            };
            // Failure means the map is full: the link then has no loss ratio of its own.
            let _ = IFACE_TX.insert(&ifindex, &first, 0);
        }
    }
    if peers_watched() {
        if let Some(counters) = WATCHED_PEERS.get_ptr_mut(&sent.dest) {
            unsafe {
                (*counters).tx_data_segs += sent.segs;
                (*counters).tx_data_buffers += 1;
                (*counters).last_tx_data_ns = now;
            }
        }
    }
}

/// The segment's destination and size in segments, if it is TCP carrying data (not a pure
/// ACK, SYN or FIN): those are what a receiver acknowledges, and what a retransmit repeats.
#[inline(always)]
fn data_sent(ctx: &TcContext) -> Option<DataSent> {
    let skb = ctx.skb.skb;
    let (protocol, gso_segs, len) = unsafe { ((*skb).protocol, (*skb).gso_segs, (*skb).len) };
    let mut dest = DestKey {
        family: 0,
        _pad: 0,
        addr: [0; 16],
    };
    let (l4, payload) = match u16::from_be(protocol as u16) {
        ETH_P_IP => {
            let header: [u8; 20] = load(ctx, 0)?;
            if header[9] != IPPROTO_TCP {
                return None;
            }
            dest.family = AF_INET;
            dest.addr[..4].copy_from_slice(&header[16..20]);
            let ihl = u32::from(header[0] & 0x0f) * 4;
            let total = u32::from(u16::from_be_bytes([header[2], header[3]]));
            (ihl, total)
        }
        ETH_P_IPV6 => {
            let header: [u8; 40] = load(ctx, 0)?;
            if header[6] != IPPROTO_TCP {
                return None;
            }
            dest.family = AF_INET6;
            dest.addr.copy_from_slice(&header[24..40]);
            let payload = u32::from(u16::from_be_bytes([header[4], header[5]]));
            (IPV6_HLEN, IPV6_HLEN + payload)
        }
        _ => return None,
    };
    let segs = u64::from(gso_segs.max(1));
    if gso_segs <= 1 {
        // One segment: data only if the IP length goes past the TCP header. (A GSO buffer
        // always carries data; its IP length may not be set for the whole.)
        let doff: [u8; 1] = load(ctx, l4 + TCP_DOFF)?;
        let tcp_header = u32::from(doff[0] >> 4) * 4;
        if payload <= l4 + tcp_header || len == 0 {
            return None;
        }
    }
    Some(DataSent { dest, segs })
}
