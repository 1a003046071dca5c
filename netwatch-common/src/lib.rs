//! Data shared between netwatch's kernel programs and its userspace: map keys and values,
//! ring-buffer events and the tracepoint field layouts userspace fills in at load time.
//!
//! Every type is `#[repr(C)]`, `Copy`, without `bool` and without implicit padding, so the
//! kernel and userspace agree on it byte for byte; each size is asserted beside the type.
#![no_std]

use core::mem::size_of;

/// Name of the XDP program in the object file.
pub const XDP_PROGRAM: &str = "netwatch_xdp";
/// Name of the `tcp:tcp_retransmit_skb` tracepoint program.
pub const RETRANSMIT_PROGRAM: &str = "netwatch_tcp_retransmit";
/// Name of the `tcp:tcp_receive_reset` tracepoint program.
pub const RESET_PROGRAM: &str = "netwatch_tcp_reset";
/// Name of the `sock:inet_sock_set_state` tracepoint program.
pub const SOCK_STATE_PROGRAM: &str = "netwatch_sock_state";
/// Name of the tc ingress (tcx) program that counts received packets, the XDP program's
/// alternative where a driver has no native XDP.
pub const RX_PROGRAM: &str = "netwatch_rx";
/// Name of the tc egress (tcx) program that counts TCP data segments sent.
pub const TX_PROGRAM: &str = "netwatch_tx";

/// Map names, shared so userspace never spells them differently from the kernel side.
/// Interfaces with an ifindex below this count in a per-CPU array slot of their own: a
/// lookup there is an offset, where a hash lookup hashes the key and walks a bucket, the
/// larger part of the XDP counter's cost. The ifindexes above it (a host whose containers
/// came and went by the thousand) use the hash. 4096 slots of 24 bytes: 96 KiB per CPU.
pub const IFACE_SLOTS: u32 = 4096;

pub mod maps {
    /// Per-CPU array indexed by ifindex, for ifindexes below [`super::IFACE_SLOTS`]:
    /// [`super::IfaceCounters`], all zero before the first packet.
    pub const IFACE_SLOTS: &str = "IFACE_SLOTS";
    /// Per-CPU hash: ifindex (`u32`) to [`super::IfaceCounters`], for the ifindexes from
    /// [`super::IFACE_SLOTS`] up.
    pub const IFACE_COUNTERS: &str = "IFACE_COUNTERS";
    /// Per-CPU LRU hash: [`super::DestKey`] to [`super::DestCounters`].
    pub const DEST_COUNTERS: &str = "DEST_COUNTERS";
    /// Ring buffer of [`super::Event`].
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU array of `u64`, indexed by [`super::KernelStat`].
    pub const KERNEL_STATS: &str = "KERNEL_STATS";
    /// Per-CPU hash: ifindex (`u32`) to [`super::TxCounters`].
    pub const IFACE_TX: &str = "IFACE_TX";
    /// Per-CPU hash: [`super::DestKey`] of a watched peer (a configured endpoint) to
    /// [`super::PeerCounters`]. Userspace inserts the keys; the programs only update entries
    /// that exist.
    pub const WATCHED_PEERS: &str = "WATCHED_PEERS";
    /// Array of one `u32`: how many peers are watched (0 lets the programs skip parsing).
    pub const WATCH_COUNT: &str = "WATCH_COUNT";
}

/// Names of the globals userspace sets before loading (see [`TracepointLayout`]).
pub mod globals {
    pub const RETRANSMIT_LAYOUT: &str = "RETRANSMIT_LAYOUT";
    pub const RESET_LAYOUT: &str = "RESET_LAYOUT";
    pub const SOCK_STATE_LAYOUT: &str = "SOCK_STATE_LAYOUT";
    pub const NETNS_FILTER: &str = "NETNS_FILTER";
    pub const SOCKET_OFFSETS: &str = "SOCKET_OFFSETS";
}

/// Packets seen by XDP on one interface (receive side).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub packets: u64,
    pub bytes: u64,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC, to the tick) of the last packet on
    /// this CPU: the precise clock would cost more than the counting.
    pub last_rx_ns: u64,
}
const _: () = assert!(size_of::<IfaceCounters>() == 24);

/// A remote TCP peer: address family (`AF_INET` or `AF_INET6`) and address.
/// An IPv4 address fills the first four bytes of `addr`; the rest stay zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestKey {
    pub family: u16,
    pub _pad: u16,
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<DestKey>() == 20);

/// What the TCP tracepoints saw toward one destination.
///
/// Retransmits are counted in segments, as `nstat TcpRetransSegs` counts them: one
/// retransmitted buffer carries up to ~45 segments with TSO/GSO.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// Segments retransmitted (attempts the kernel did not fail locally)...
    pub retrans_segs: u64,
    /// ...in this many buffers: the independent loss events, for the ratio's confidence.
    pub retransmits: u64,
    /// Retransmit attempts that failed locally (queue busy, no memory, no route): not on
    /// the wire, so not loss.
    pub retrans_failed: u64,
    /// RSTs received from this destination.
    pub resets_received: u64,
    /// Active opens that reached ESTABLISHED.
    pub connects_ok: u64,
    /// Active opens that went from SYN_SENT straight to CLOSE (refused, timed out, unreachable).
    pub connects_failed: u64,
    /// `bpf_ktime_get_ns()` of the last event of any kind on this CPU.
    pub last_event_ns: u64,
    /// When a connect last succeeded, and last failed, on this CPU.
    pub last_connect_ok_ns: u64,
    pub last_connect_failed_ns: u64,
    /// When a segment was last retransmitted on this CPU, and the socket's RTO backoff then:
    /// how many timeouts in a row passed without an acknowledgement of new data.
    pub last_retrans_ns: u64,
    pub retrans_backoff: u32,
    /// The backoff of the latest retransmit that followed a timeout without progress
    /// (backoff 1 or more), and when it was: a stall, not random loss.
    pub stall_backoff: u32,
    pub last_stall_ns: u64,
}
const _: () = assert!(size_of::<DestCounters>() == 96);

/// What a watched peer (a configured endpoint) exchanged with this host, as XDP and the tc
/// egress program saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Packets received from it, and when the last one arrived on this CPU.
    pub rx_packets: u64,
    pub last_rx_ns: u64,
    /// TCP segments carrying data sent to it, the buffers that carried them, and when the
    /// last one left on this CPU.
    pub tx_data_segs: u64,
    pub tx_data_buffers: u64,
    pub last_tx_data_ns: u64,
}
const _: () = assert!(size_of::<PeerCounters>() == 40);

/// TCP segments carrying data that left one interface (tc egress), counted as the segments
/// they become on the wire (`gso_segs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub data_segs: u64,
    /// The buffers (skbs) that carried them: a loss on the way takes a whole one.
    pub data_buffers: u64,
    /// `bpf_ktime_get_ns()` of the last data segment on this CPU.
    pub last_data_ns: u64,
}
const _: () = assert!(size_of::<TxCounters>() == 24);

/// Most peers userspace may watch.
pub const MAX_WATCHED_PEERS: u32 = 256;

/// Kind of an [`Event`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Retransmit = 1,
    ResetReceived = 2,
    ConnectFailed = 3,
    /// XDP saw a packet on an interface after at least `RX_RESUMED_AFTER_NS` of silence on
    /// that CPU: userspace should start watching its pace.
    RxResumed = 4,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Retransmit),
            2 => Some(Self::ResetReceived),
            3 => Some(Self::ConnectFailed),
            4 => Some(Self::RxResumed),
            _ => None,
        }
    }
}

/// Silence after which a received packet is reported as [`EventKind::RxResumed`].
pub const RX_RESUMED_AFTER_NS: u64 = 1_000_000_000;

/// A signal that userspace must hear of at once, sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub ts_ns: u64,
    /// The interface, for [`EventKind::RxResumed`]; 0 for TCP events.
    pub ifindex: u32,
    pub family: u16,
    /// An [`EventKind`] as `u8`.
    pub kind: u8,
    /// The socket's TCP state (`TCP_ESTABLISHED` = 1 ...), where the tracepoint gives one.
    pub tcp_state: u8,
    pub sport: u16,
    pub dport: u16,
    pub _pad: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}
const _: () = assert!(size_of::<Event>() == 56);

/// Indices into the `KERNEL_STATS` per-CPU array: the kernel side's own accounting.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelStat {
    /// Events written to the ring buffer.
    EventsSent = 0,
    /// Events not sent because the per-CPU rate limit was reached (their counters still count).
    EventsRateLimited = 1,
    /// Events lost because the ring buffer was full.
    EventsRingFull = 2,
    /// Destination counters that could not be created (map full and LRU could not evict).
    DestInsertFailed = 3,
}
/// Number of [`KernelStat`] slots.
pub const KERNEL_STAT_COUNT: u32 = 4;

/// Offsets of a tracepoint's fields in its record, read from tracefs's `format` file at load
/// time because they differ between kernel versions. [`TracepointLayout::ABSENT`] marks a field
/// this kernel's tracepoint does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
    /// `state` of `tcp_retransmit_skb`, or `newstate` of `inet_sock_set_state`.
    pub state: u16,
    /// `oldstate` of `inet_sock_set_state`.
    pub oldstate: u16,
    /// `protocol` of `inet_sock_set_state`.
    pub protocol: u16,
    /// `skaddr`: the socket, whose network namespace decides whether the event counts.
    pub skaddr: u16,
    /// `skbaddr` of `tcp_retransmit_skb`: the buffer, whose segment count is read.
    pub skbaddr: u16,
    /// `err` of `tcp_retransmit_skb` (recent kernels): non-zero when the attempt failed.
    pub err: u16,
}
const _: () = assert!(size_of::<TracepointLayout>() == 26);

impl TracepointLayout {
    pub const ABSENT: u16 = u16::MAX;
    /// The layout before userspace fills it in: the programs do nothing with it.
    pub const UNSET: Self = Self {
        family: Self::ABSENT,
        sport: Self::ABSENT,
        dport: Self::ABSENT,
        saddr: Self::ABSENT,
        daddr: Self::ABSENT,
        saddr_v6: Self::ABSENT,
        daddr_v6: Self::ABSENT,
        state: Self::ABSENT,
        oldstate: Self::ABSENT,
        protocol: Self::ABSENT,
        skaddr: Self::ABSENT,
        skbaddr: Self::ABSENT,
        err: Self::ABSENT,
    };
}

/// Which network namespace's TCP events count. The TCP tracepoints fire for every namespace;
/// an agent watches one. Offsets come from the kernel's BTF at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsFilter {
    /// 0: count every namespace (the offsets could not be found).
    pub enabled: u32,
    /// The watched namespace's inode number (`stat /proc/self/ns/net`).
    pub inum: u32,
    /// Offset of `skc_net` (a `struct net *`) in `struct sock`.
    pub sk_net: u32,
    /// Offset of `ns.inum` in `struct net`.
    pub net_inum: u32,
}
const _: () = assert!(size_of::<NetnsFilter>() == 16);

impl NetnsFilter {
    pub const OFF: Self = Self {
        enabled: 0,
        inum: 0,
        sk_net: 0,
        net_inum: 0,
    };
}

/// Where the retransmit program finds a buffer's segment count and a socket's RTO backoff.
/// Offsets come from the kernel's BTF at load time; without them every retransmit counts as
/// one segment and the backoff reads 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOffsets {
    /// 0: the offsets could not be found.
    pub enabled: u32,
    /// Offset of `tcp_gso_segs` (`u16`) in `struct sk_buff`: `cb` plus its place in
    /// `struct tcp_skb_cb` (what `tcp_skb_pcount()` reads).
    pub skb_gso_segs: u32,
    /// Offset of `icsk_backoff` (`u8`) in `struct inet_connection_sock`, which a TCP socket
    /// begins with.
    pub icsk_backoff: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<SocketOffsets>() == 16);

impl SocketOffsets {
    pub const OFF: Self = Self {
        enabled: 0,
        skb_gso_segs: 0,
        icsk_backoff: 0,
        _pad: 0,
    };
}

/// Linux's address family numbers, which the tracepoints report.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// TCP states used by the programs (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_CLOSE: u8 = 7;
pub const IPPROTO_TCP: u16 = 6;
/// tcx's verdict that hands the packet on to the next program unchanged (`TCX_NEXT`).
pub const TCX_NEXT: i32 = -1;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is repr(C), Copy, has no padding and is valid for any bit pattern.
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::DestKey {}
    unsafe impl aya::Pod for super::DestCounters {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::TracepointLayout {}
    unsafe impl aya::Pod for super::PeerCounters {}
    unsafe impl aya::Pod for super::TxCounters {}
    unsafe impl aya::Pod for super::NetnsFilter {}
    unsafe impl aya::Pod for super::SocketOffsets {}
}
