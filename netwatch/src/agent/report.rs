//! The periodic line per interface: receive and transmit rates, and retransmits toward
//! destinations routed through it.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    ebpf::Probes,
    netlink::{Link, NetlinkWatcher},
};

/// Counter values at one sample, for rates.
#[derive(Clone, Copy, Default)]
struct Sample {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
}

pub struct Reporter {
    last_at: Instant,
    last: HashMap<u32, Sample>,
    last_retransmits: HashMap<IpAddr, u64>,
    /// Destination to output interface; cleared whenever routes change.
    routes: HashMap<IpAddr, Option<u32>>,
}

impl Reporter {
    pub fn new() -> Self {
        Self {
            last_at: Instant::now(),
            last: HashMap::new(),
            last_retransmits: HashMap::new(),
            routes: HashMap::new(),
        }
    }

    pub fn routes_changed(&mut self) {
        self.routes.clear();
    }

    /// Logs one line per non-loopback interface. Receive counts come from XDP where it is
    /// attached (exact, and what the verdict uses), else from the kernel's own counters.
    pub async fn report(&mut self, probes: &Probes, watcher: &NetlinkWatcher) {
        let links = match watcher.links().await {
            Ok(links) => links,
            Err(e) => return warn!(error = %e, "interface stats skipped: reading links failed"),
        };
        let retransmits = self.retransmits_per_link(probes, watcher).await;
        let now = Instant::now();
        let elapsed = now
            .duration_since(self.last_at)
            .max(Duration::from_millis(1))
            .as_secs_f64();
        let mut next = HashMap::with_capacity(links.len());
        for link in links.iter().filter(|l| !l.loopback) {
            let sample = sample(probes, link);
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
                retransmits = retransmits.get(&link.ifindex).copied().unwrap_or(0),
                "interface stats"
            );
            next.insert(link.ifindex, sample);
        }
        self.last = next;
        self.last_at = now;
    }

    /// Retransmits since the last report, per output interface of their destination.
    async fn retransmits_per_link(
        &mut self,
        probes: &Probes,
        watcher: &NetlinkWatcher,
    ) -> HashMap<u32, u64> {
        let stats = match probes.dest_stats() {
            Ok(stats) => stats,
            Err(e) => {
                warn!(error = %e, "retransmit counts unavailable this round");
                return HashMap::new();
            }
        };
        let mut per_link = HashMap::new();
        for (addr, dest) in &stats {
            let before = self.last_retransmits.get(addr).copied().unwrap_or(0);
            let delta = dest.retransmits.saturating_sub(before);
            if delta == 0 {
                continue;
            }
            let oif = match self.routes.get(addr) {
                Some(oif) => *oif,
                None => {
                    let oif = watcher.route_to(*addr).await.unwrap_or(None);
                    self.routes.insert(*addr, oif);
                    oif
                }
            };
            if let Some(oif) = oif {
                *per_link.entry(oif).or_insert(0) += delta;
            }
        }
        self.last_retransmits = stats
            .into_iter()
            .map(|(addr, dest)| (addr, dest.retransmits))
            .collect();
        per_link
    }
}

fn sample(probes: &Probes, link: &Link) -> Sample {
    let xdp = probes
        .xdp_attached(link.ifindex)
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
    }
}
