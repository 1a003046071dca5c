//! Counts every received packet per interface. Always passes the packet on.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use netwatch_common::IfaceCounters;

use crate::maps::IFACE_COUNTERS;

#[inline(always)]
pub fn count_packet(ctx: &XdpContext) {
    let ifindex = ctx.ingress_ifindex() as u32;
    // The program is not frags-aware, so the kernel hands it linear packets: this is the
    // whole length, Ethernet header included, as the device's own rx_bytes counts it.
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let now = unsafe { bpf_ktime_get_ns() };
    match IFACE_COUNTERS.get_ptr_mut(ifindex) {
        Some(counters) => unsafe {
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
        }
    }
}
