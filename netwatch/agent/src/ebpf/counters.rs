//! Turns the kernel's per-CPU counters into totals userspace can use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netwatch_common::{
    DestCounters, DestKey, IfaceCounters, PeerCounters, TxCounters, AF_INET, AF_INET6,
};

/// Packets XDP saw arriving on one interface, summed over CPUs; `last_rx_ns` is the latest
/// packet on any CPU, 0 before the first, as [`dated_late`] gives it.
pub type IfaceRx = IfaceCounters;

/// `rx` with its time moved from the kernel's coarse clock to the latest moment the packet
/// can have arrived: one tick later, but never after now.
///
/// XDP dates packets with the coarse clock because a precise clock read would cost it more
/// than all its counting (docs/kernel-notes.md). The coarse clock lags by up to a tick
/// (1/HZ). Read raw, a reply a moment after a request could look older than the request, and
/// the link unanswered; read late, it can only look answered up to a tick too soon, which
/// delays noticing silence by that tick at most.
pub fn dated_late(mut rx: IfaceRx) -> IfaceRx {
    if rx.last_rx_ns != 0 {
        rx.last_rx_ns = (rx.last_rx_ns + coarse_tick_ns()).min(crate::clock::monotonic_ns());
    }
    rx
}

/// The coarse clock's resolution: the kernel's tick.
fn coarse_tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: res is a valid timespec; CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
        // HZ=100, the coarsest a kernel builds with, if the question fails.
        if ok {
            res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64
        } else {
            10_000_000
        }
    })
}

/// TCP data segments that left one interface, summed over CPUs.
pub type IfaceTx = TxCounters;

/// TCP signals toward one destination, summed over CPUs.
pub type DestStats = DestCounters;

/// What XDP and the tc egress program saw of one watched peer, summed over CPUs.
pub type PeerStats = PeerCounters;

/// A per-CPU map value that adds up over CPUs. The total has the kernel's own type: the
/// same fields, read as "on any CPU" where the kernel wrote "on this CPU".
pub trait CpuTotal: Copy + Default {
    /// This total with one more CPU's value in it.
    fn plus(self, cpu: &Self) -> Self;

    fn sum<'a>(per_cpu: impl IntoIterator<Item = &'a Self>) -> Self
    where
        Self: 'a,
    {
        per_cpu
            .into_iter()
            .fold(Self::default(), |total, cpu| total.plus(cpu))
    }
}

/// Implements [`CpuTotal`] for a value whose every field is a count (added up) or the time
/// of the latest event (the maximum); naming each field keeps a new one from going unsummed.
macro_rules! counts_and_times {
    ($value:ty { add: $($count:ident),+; latest: $($time:ident),+ }) => {
        impl CpuTotal for $value {
            fn plus(self, cpu: &Self) -> Self {
                Self {
                    $($count: self.$count + cpu.$count,)+
                    $($time: self.$time.max(cpu.$time),)+
                }
            }
        }
    };
}

counts_and_times!(IfaceCounters { add: packets, bytes; latest: last_rx_ns });
counts_and_times!(TxCounters { add: data_segs, data_buffers; latest: last_data_ns });
counts_and_times!(PeerCounters {
    add: rx_packets, tx_data_segs, tx_data_buffers;
    latest: last_rx_ns, last_tx_data_ns
});

impl CpuTotal for DestCounters {
    fn plus(self, cpu: &Self) -> Self {
        // What goes with a time comes from the CPU that saw the latest one.
        let (retrans_backoff, last_retrans_ns) = latest(
            (self.retrans_backoff, self.last_retrans_ns),
            (cpu.retrans_backoff, cpu.last_retrans_ns),
        );
        let (stall_backoff, last_stall_ns) = latest(
            (self.stall_backoff, self.last_stall_ns),
            (cpu.stall_backoff, cpu.last_stall_ns),
        );
        Self {
            retrans_segs: self.retrans_segs + cpu.retrans_segs,
            retransmits: self.retransmits + cpu.retransmits,
            retrans_failed: self.retrans_failed + cpu.retrans_failed,
            resets_received: self.resets_received + cpu.resets_received,
            connects_ok: self.connects_ok + cpu.connects_ok,
            connects_failed: self.connects_failed + cpu.connects_failed,
            last_event_ns: self.last_event_ns.max(cpu.last_event_ns),
            last_connect_ok_ns: self.last_connect_ok_ns.max(cpu.last_connect_ok_ns),
            last_connect_failed_ns: self.last_connect_failed_ns.max(cpu.last_connect_failed_ns),
            last_retrans_ns,
            retrans_backoff,
            stall_backoff,
            last_stall_ns,
        }
    }
}

/// Of two (value, time) pairs, the later one.
fn latest(a: (u32, u64), b: (u32, u64)) -> (u32, u64) {
    if b.1 > a.1 {
        b
    } else {
        a
    }
}

/// Whether an outage toward a destination (a stall of `timeouts` timeouts in a row or more)
/// went on within `window_ns` of `now_ns`: its retransmits since are that outage's and its
/// recovery's, not loss. A shorter stall is what random loss does to a thin flow, and its
/// retransmits count as loss.
pub fn outage_lately(tcp: &DestStats, now_ns: u64, window_ns: u64, timeouts: u32) -> bool {
    is_outage(tcp, timeouts) && now_ns.saturating_sub(tcp.last_stall_ns) < window_ns
}

/// Whether the latest stall toward a destination was an outage: `timeouts` in a row or more.
pub fn is_outage(tcp: &DestStats, timeouts: u32) -> bool {
    tcp.last_stall_ns != 0 && tcp.stall_backoff + 1 >= timeouts
}

/// The kernel-side key for an address.
pub fn dest_key(addr: IpAddr) -> DestKey {
    let mut key = DestKey::default();
    match addr {
        IpAddr::V4(v4) => {
            key.family = AF_INET;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key.family = AF_INET6;
            key.addr = v6.octets();
        }
    }
    key
}

/// The address a kernel-side key or event names, if its family is IPv4 or IPv6.
pub fn ip_addr(family: u16, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*addr))),
        _ => None,
    }
}

pub fn dest_addr(key: &DestKey) -> Option<IpAddr> {
    ip_addr(key.family, &key.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_times_are_dated_a_tick_late_but_never_in_the_future() {
        let tick = coarse_tick_ns();
        assert!((1_000_000..=10_000_000).contains(&tick), "tick {tick} ns");
        let rx = |last_rx_ns| IfaceCounters {
            packets: 1,
            bytes: 60,
            last_rx_ns,
        };
        assert_eq!(
            dated_late(rx(0)).last_rx_ns,
            0,
            "no packet yet stays undated"
        );
        let long_ago = crate::clock::monotonic_ns() - 10 * tick;
        assert_eq!(dated_late(rx(long_ago)).last_rx_ns, long_ago + tick);
        let before = crate::clock::monotonic_ns();
        let dated = dated_late(rx(before)).last_rx_ns;
        assert!(dated >= before && dated <= crate::clock::monotonic_ns());
    }

    #[test]
    fn iface_totals_add_counts_and_keep_the_latest_time() {
        let cpus = [
            IfaceCounters {
                packets: 3,
                bytes: 300,
                last_rx_ns: 50,
            },
            IfaceCounters {
                packets: 2,
                bytes: 120,
                last_rx_ns: 90,
            },
            IfaceCounters::default(),
        ];
        assert_eq!(
            IfaceRx::sum(&cpus),
            IfaceRx {
                packets: 5,
                bytes: 420,
                last_rx_ns: 90
            }
        );
    }

    #[test]
    fn dest_totals_add_every_counter() {
        let cpu = DestCounters {
            retrans_segs: 4,
            retrans_failed: 5,
            resets_received: 1,
            connects_ok: 2,
            connects_failed: 3,
            last_event_ns: 7,
            ..DestCounters::default()
        };
        let total = DestStats::sum(&[cpu, cpu]);
        assert_eq!(
            (
                total.retrans_segs,
                total.retrans_failed,
                total.resets_received
            ),
            (8, 10, 2)
        );
        assert_eq!(
            (
                total.connects_ok,
                total.connects_failed,
                total.last_event_ns
            ),
            (4, 6, 7)
        );
    }

    #[test]
    fn a_backoff_comes_from_the_cpu_that_retransmitted_last() {
        let early = DestCounters {
            retrans_segs: 1,
            last_retrans_ns: 100,
            retrans_backoff: 3,
            stall_backoff: 3,
            last_stall_ns: 100,
            ..DestCounters::default()
        };
        let late = DestCounters {
            retrans_segs: 1,
            last_retrans_ns: 200,
            retrans_backoff: 0,
            ..DestCounters::default()
        };
        let total = DestStats::sum(&[late, early]);
        assert_eq!((total.retrans_backoff, total.last_retrans_ns), (0, 200));
        assert_eq!((total.stall_backoff, total.last_stall_ns), (3, 100));
    }

    #[test]
    fn keys_round_trip_through_addresses() {
        for text in ["198.18.3.4", "fd00:6e77::9"] {
            let addr: IpAddr = text.parse().unwrap();
            assert_eq!(dest_addr(&dest_key(addr)), Some(addr));
        }
    }

    #[test]
    fn addresses_decode_by_family() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[198, 18, 0, 2]);
        assert_eq!(ip_addr(AF_INET, &raw), Some("198.18.0.2".parse().unwrap()));
        let v6: Ipv6Addr = "fd00:6e77::2".parse().unwrap();
        assert_eq!(ip_addr(AF_INET6, &v6.octets()), Some(IpAddr::V6(v6)));
        assert_eq!(ip_addr(1, &raw), None);
    }
}
