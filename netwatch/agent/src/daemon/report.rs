//! The periodic line per interface: receive and transmit rates, and retransmits toward
//! destinations routed through it. It reads what the tracker already keeps (links refreshed
//! every classification, retransmits attributed per link) rather than asking netlink again.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tracing::info;

use super::tracker::Tracker;
use crate::{ebpf::KernelPrograms, netlink::Link};

/// Counter values at one sample, for rates.
#[derive(Clone, Copy, Default)]
struct Sample {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    retransmits: u64,
}

pub struct Reporter {
    last_at: Instant,
    last: HashMap<u32, Sample>,
}

impl Reporter {
    pub fn new() -> Self {
        Self {
            last_at: Instant::now(),
            last: HashMap::new(),
        }
    }

    /// Logs one line per watched interface. Receive counts come from XDP where it is
    /// attached (exact, and what the verdict uses), else from the kernel's own counters.
    pub fn report(&mut self, probes: &KernelPrograms, tracker: &Tracker) {
        let now = Instant::now();
        let elapsed = now
            .duration_since(self.last_at)
            .max(Duration::from_millis(1))
            .as_secs_f64();
        let mut next = HashMap::with_capacity(tracker.links.len());
        let mut links: Vec<&Link> = tracker
            .links
            .values()
            .filter(|l| tracker.watches(l))
            .collect();
        links.sort_by_key(|l| l.ifindex);
        for link in links {
            let sample = sample(probes, tracker, link);
            let before = self.last.get(&link.ifindex).copied().unwrap_or(sample);
            let rate =
                |now: u64, then: u64| (now.saturating_sub(then) as f64 / elapsed).round() as u64;
            info!(
                ifindex = link.ifindex,
                ifname = %link.name,
                rx_pps = rate(sample.rx_packets, before.rx_packets),
                rx_bytes_per_s = rate(sample.rx_bytes, before.rx_bytes),
                tx_pps = rate(sample.tx_packets, before.tx_packets),
                tx_bytes_per_s = rate(sample.tx_bytes, before.tx_bytes),
                retransmits = sample.retransmits.saturating_sub(before.retransmits),
                "interface stats"
            );
            next.insert(link.ifindex, sample);
        }
        self.last = next;
        self.last_at = now;
    }
}

fn sample(probes: &KernelPrograms, tracker: &Tracker, link: &Link) -> Sample {
    let xdp = probes
        .rx_attached(link.ifindex)
        .then(|| probes.iface_rx(link.ifindex).ok().flatten())
        .flatten();
    let (rx_packets, rx_bytes) = match xdp {
        Some(rx) => (rx.packets, rx.bytes),
        None => (link.stats.rx_packets, link.stats.rx_bytes),
    };
    Sample {
        rx_packets,
        rx_bytes,
        tx_packets: link.stats.tx_packets,
        tx_bytes: link.stats.tx_bytes,
        retransmits: tracker.link_retrans(link.ifindex).segs,
    }
}
