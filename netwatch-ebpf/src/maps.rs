//! Every map and load-time global of the kernel side, in one place.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use netwatch_common::{
    DestCounters, DestKey, IfaceCounters, NetnsFilter, PeerCounters, SocketOffsets,
    TracepointLayout, TxCounters, IFACE_SLOTS as IFACE_SLOTS_LEN, KERNEL_STAT_COUNT,
    MAX_WATCHED_PEERS,
};

/// Receive counters per ifindex below IFACE_SLOTS, in a slot each.
#[map]
pub static IFACE_SLOTS: PerCpuArray<IfaceCounters> =
    PerCpuArray::with_max_entries(IFACE_SLOTS_LEN, 0);

/// Receive counters for the ifindexes from IFACE_SLOTS up: room for 1024 of them.
#[map]
pub static IFACE_COUNTERS: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::with_max_entries(1024, 0);

/// TCP data segments sent per ifindex (tc egress).
#[map]
pub static IFACE_TX: PerCpuHashMap<u32, TxCounters> = PerCpuHashMap::with_max_entries(1024, 0);

/// Traffic with the peers userspace watches (configured endpoints); only existing keys are
/// updated, so unwatched traffic never grows it.
#[map]
pub static WATCHED_PEERS: PerCpuHashMap<DestKey, PeerCounters> =
    PerCpuHashMap::with_max_entries(MAX_WATCHED_PEERS, 0);

/// Slot 0: how many peers are watched. An array lookup is inlined by the verifier, so an
/// agent with no endpoints pays almost nothing for the feature.
#[map]
pub static WATCH_COUNT: Array<u32> = Array::with_max_entries(1, 0);

/// TCP signals per destination. LRU, so a host talking to many peers keeps the recent ones.
#[map]
pub static DEST_COUNTERS: LruPerCpuHashMap<DestKey, DestCounters> =
    LruPerCpuHashMap::with_max_entries(8192, 0);

/// Events userspace must hear of at once: room for ~5,000 of them (48 bytes + 8 header).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// The kernel side's own accounting, indexed by `KernelStat`.
#[map]
pub static KERNEL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_STAT_COUNT, 0);

/// Per-CPU state of the ring buffer's rate limiter and wake-up policy.
#[map]
pub static EVENT_PACING: PerCpuArray<crate::events::Pacing> = PerCpuArray::with_max_entries(1, 0);

// Field offsets of each tracepoint's record, set by userspace from tracefs before loading.
#[no_mangle]
pub static RETRANSMIT_LAYOUT: TracepointLayout = TracepointLayout::UNSET;
#[no_mangle]
pub static RESET_LAYOUT: TracepointLayout = TracepointLayout::UNSET;
#[no_mangle]
pub static SOCK_STATE_LAYOUT: TracepointLayout = TracepointLayout::UNSET;
#[no_mangle]
pub static NETNS_FILTER: NetnsFilter = NetnsFilter::OFF;
#[no_mangle]
pub static SOCKET_OFFSETS: SocketOffsets = SocketOffsets::OFF;

/// Reads a load-time global; volatile so the compiler cannot fold in the placeholder value.
#[inline(always)]
pub fn layout(global: &'static TracepointLayout) -> TracepointLayout {
    unsafe { core::ptr::read_volatile(global) }
}

#[inline(always)]
pub fn netns_filter() -> NetnsFilter {
    unsafe { core::ptr::read_volatile(&NETNS_FILTER) }
}

#[inline(always)]
pub fn socket_offsets() -> SocketOffsets {
    unsafe { core::ptr::read_volatile(&SOCKET_OFFSETS) }
}

/// Whether any peer is watched: only then is a packet's address worth parsing.
#[inline(always)]
pub fn peers_watched() -> bool {
    WATCH_COUNT.get(0).is_some_and(|count| *count > 0)
}

#[inline(always)]
pub fn count_stat(stat: netwatch_common::KernelStat) {
    if let Some(slot) = KERNEL_STATS.get_ptr_mut(stat as u32) {
        unsafe { *slot += 1 };
    }
}
