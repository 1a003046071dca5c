//! Decides when to ask the kernel directly about a link, instead of waiting for its event.
//!
//! The kernel's linkwatch sends carrier changes of ordinary NICs up to about a second late
//! and coalesces fast flaps (docs/kernel-notes.md). A unicast RTM_GETLINK answers at
//! once and flushes the pending event. Asking costs a round trip, so the eBPF signals decide
//! when: a link that was receiving goes quiet, or retransmits start toward a destination
//! routed through it. While nothing is received nothing is polled, so an idle host pays
//! nothing for this.

use std::collections::HashMap;

use crate::{ebpf::KernelPrograms, state::Observations};

/// Poll reception this often while a link is active.
pub const POLL_MS: u64 = 20;
const MS: u64 = 1_000_000;
/// A link is active if it received something this recently.
const ACTIVE_NS: u64 = 1_000 * MS;
/// Never call a link quiet sooner than this after its last packet...
const MIN_QUIET_NS: u64 = 30 * MS;
/// ...nor sooner than this many of its usual gaps between packets.
const QUIET_GAPS: u64 = 4;
/// At most one question per link this often.
const ASK_SPACING_NS: u64 = 100 * MS;

#[derive(Default)]
struct Pace {
    packets: u64,
    last_rx_ns: u64,
    /// Typical gap between packets: the latest, decaying slowly so a burst does not
    /// shrink it at once.
    gap_ns: u64,
    /// Counter changes seen: the pace is known from the second on.
    changes: u32,
    asked_at_ns: Option<u64>,
}

#[derive(Default)]
pub struct FastPath {
    pace: HashMap<u32, Pace>,
    /// Questions asked so far, for the metrics.
    pub asked: u64,
}

impl FastPath {
    /// Whether any link XDP watches received something within the last second: then
    /// polling is worth its cost.
    pub fn wanted(observations: &Observations, now_ns: u64) -> bool {
        observations.links.values().any(|l| {
            l.xdp_rx.is_some_and(|rx| {
                rx.last_rx_ns != 0 && now_ns.saturating_sub(rx.last_rx_ns) < ACTIVE_NS
            })
        })
    }

    /// Whether any polled link is still active.
    pub fn active(&self, now_ns: u64) -> bool {
        self.pace
            .values()
            .any(|p| p.last_rx_ns != 0 && now_ns.saturating_sub(p.last_rx_ns) < ACTIVE_NS)
    }

    /// Reads reception on every XDP-watched link; returns the links that just went quiet.
    pub fn quiet_links(
        &mut self,
        probes: &KernelPrograms,
        ifindexes: impl Iterator<Item = u32>,
        now_ns: u64,
    ) -> Vec<u32> {
        let mut quiet = Vec::new();
        let mut seen = Vec::new();
        for ifindex in ifindexes.filter(|i| probes.rx_attached(*i)) {
            seen.push(ifindex);
            let Ok(Some(rx)) = probes.iface_rx(ifindex) else {
                continue;
            };
            let pace = self.pace.entry(ifindex).or_default();
            if pace.note(rx.packets, rx.last_rx_ns, now_ns) {
                quiet.push(ifindex);
            }
        }
        self.pace.retain(|i, _| seen.contains(i));
        self.asked += quiet.len() as u64;
        quiet
    }

    /// Retransmits or failed connects toward a destination routed through `ifindex`: ask,
    /// unless this link was asked about a moment ago.
    pub fn on_tcp_trouble(&mut self, ifindex: u32, now_ns: u64) -> bool {
        let pace = self.pace.entry(ifindex).or_default();
        if pace
            .asked_at_ns
            .is_some_and(|at| now_ns.saturating_sub(at) < ASK_SPACING_NS)
        {
            return false;
        }
        pace.asked_at_ns = Some(now_ns);
        self.asked += 1;
        true
    }
}

impl Pace {
    /// Updates the pace with the latest counters; true if the link just went quiet.
    fn note(&mut self, packets: u64, last_rx_ns: u64, now_ns: u64) -> bool {
        if packets != self.packets {
            let received = packets.saturating_sub(self.packets);
            // After a silence the old pace says nothing: the gap across it is not a gap
            // between packets of the same traffic.
            if last_rx_ns.saturating_sub(self.last_rx_ns) >= ACTIVE_NS {
                self.changes = 0;
                self.gap_ns = 0;
            } else if let Some(gap) = last_rx_ns
                .saturating_sub(self.last_rx_ns)
                .checked_div(received)
            {
                self.gap_ns = gap.max(self.gap_ns - self.gap_ns / 8);
            }
            self.packets = packets;
            self.last_rx_ns = last_rx_ns;
            self.asked_at_ns = None;
            self.changes = self.changes.saturating_add(1);
        }
        let silent = now_ns.saturating_sub(self.last_rx_ns);
        // Until the pace is known, silence cannot be told from a link's normal gaps.
        let quiet = self.changes >= 2
            && silent < ACTIVE_NS
            && silent >= MIN_QUIET_NS.max(QUIET_GAPS * self.gap_ns)
            && self.asked_at_ns.is_none();
        if quiet {
            self.asked_at_ns = Some(now_ns);
        }
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link receiving a packet every millisecond, then nothing.
    #[test]
    fn a_busy_link_going_silent_is_asked_about_once() {
        let mut pace = Pace::default();
        let mut asks = 0;
        for ms in 1..=1000u64 {
            if pace.note(ms, ms * MS, ms * MS) {
                asks += 1;
            }
        }
        assert_eq!(asks, 0, "a steady link is never quiet");
        let mut asked_at = None;
        for ms in 1001..=1500u64 {
            if pace.note(1000, 1000 * MS, ms * MS) {
                asks += 1;
                asked_at.get_or_insert(ms);
            }
        }
        assert_eq!(asks, 1);
        assert_eq!(asked_at, Some(1000 + MIN_QUIET_NS / MS));
    }

    #[test]
    fn a_slow_link_is_judged_by_its_own_pace() {
        // One packet every 200 ms: a 100 ms silence is normal.
        let mut pace = Pace::default();
        for tick in 1..=20u64 {
            let now = tick * 50 * MS;
            let packets = now / (200 * MS);
            let quiet = pace.note(packets, packets * 200 * MS, now);
            assert!(!quiet, "quiet at {} ms", now / MS);
        }
    }

    #[test]
    fn a_link_resuming_after_silence_starts_a_fresh_pace() {
        let mut pace = Pace::default();
        for ms in 1..=100u64 {
            pace.note(ms, ms * MS, ms * MS);
        }
        pace.note(100, 100 * MS, 2_000 * MS);
        // Traffic again from 5 s, a packet a millisecond; then silence from 5.1 s.
        for ms in 5_001..=5_100u64 {
            assert!(!pace.note(ms, ms * MS, ms * MS));
        }
        let asked = (5_101..=5_300u64).find(|ms| pace.note(5_100, 5_100 * MS, ms * MS));
        assert_eq!(asked, Some(5_100 + MIN_QUIET_NS / MS));
    }

    #[test]
    fn tcp_trouble_asks_at_most_every_spacing() {
        let mut fast = FastPath::default();
        assert!(fast.on_tcp_trouble(3, 1000 * MS));
        assert!(!fast.on_tcp_trouble(3, 1050 * MS));
        assert!(fast.on_tcp_trouble(3, 1100 * MS));
        assert_eq!(fast.asked, 2);
    }
}
