//! Builds the observations the classifier judges from the tracker's tables and the kernel
//! programs' maps, attributing each destination's retransmitted segments to the interface
//! the kernel routes it through.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use tracing::warn;

use super::{Resolved, Tracker};
use crate::{
    ebpf::{self, DestStats, KernelPrograms},
    netlink::{Link, NetlinkWatcher, Route},
    state::{EndpointObservation, GatewayObservation, LinkObservation, Observations},
};

impl Tracker {
    /// Everything the classifier needs, now.
    pub async fn observe(
        &mut self,
        probes: &KernelPrograms,
        watcher: &NetlinkWatcher,
        now_ns: u64,
    ) -> Observations {
        let dest = probes.dest_stats().unwrap_or_else(|e| {
            warn!(error = %e, "TCP counters unavailable this round");
            HashMap::new()
        });
        self.remember_outages(&dest, now_ns);
        self.attribute_retransmits(&dest, watcher, now_ns).await;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (spec, resolved) in self.endpoints.clone() {
            let mut observation = EndpointObservation {
                name: spec.name.clone(),
                target: spec.address.to_string(),
                address: None,
                unresolved: None,
                oif: None,
                tcp: DestStats::default(),
                last_outage_ns: None,
                peer: None,
                probe: self.probes.get(&spec.name).cloned(),
            };
            match resolved {
                Resolved::Address(address) => {
                    let ip = address.ip();
                    observation.address = Some(address);
                    observation.oif = self.route_to(watcher, ip).await.map(|hop| hop.oif);
                    observation.tcp = dest.get(&ip).copied().unwrap_or_default();
                    observation.last_outage_ns = self.outages.get(&ip).copied();
                    observation.peer = probes.peer_stats(ip).ok().flatten();
                }
                Resolved::Pending(why) => observation.unresolved = Some(why),
            }
            endpoints.push(observation);
        }
        // Which links the verdict rests on first, so that the unwatched ones (a container
        // host's hundreds of veths) cost nothing more here.
        self.needed = (self.routes.iter())
            .filter(|r| r.is_default() && r.in_main_table())
            .flat_map(|r| r.oifs.iter().copied())
            .chain(endpoints.iter().filter_map(|e| e.oif))
            .collect();
        let links = (self.links.values())
            .filter(|link| self.watches(link))
            .map(|link| (link.ifindex, self.link_observation(link, probes)))
            .collect::<BTreeMap<_, _>>();
        Observations { links, endpoints }
    }

    fn link_observation(&self, link: &Link, probes: &KernelPrograms) -> LinkObservation {
        let default_routes: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.is_default() && r.in_main_table() && r.oifs.contains(&link.ifindex))
            .collect();
        let gateway = default_routes.iter().find_map(|r| r.gateway).map(|addr| {
            let entry = self.neighbours.get(link.ifindex, addr);
            GatewayObservation {
                addr,
                state: entry.map(|e| e.state),
                failing: entry.is_some_and(|e| e.failing),
                confirmed_at_ns: entry.and_then(|e| e.confirmed_at_ns),
            }
        });
        let retrans = self.link_retrans(link.ifindex);
        LinkObservation {
            xdp_rx: probes.rx_attached(link.ifindex).then(|| {
                probes
                    .iface_rx(link.ifindex)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
            tx: probes.tx_attached(link.ifindex).then(|| {
                probes
                    .iface_tx(link.ifindex)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
            retrans_segs: retrans.segs,
            retransmits: retrans.events,
            stall_retrans_segs: retrans.stall_segs,
            stall_retransmits: retrans.stall_events,
            default_route: !default_routes.is_empty(),
            gateway,
            neighbour_confirmed: self.neighbours.latest_confirmed(link.ifindex),
            link: link.clone(),
        }
    }

    /// Notes each destination's outage (a stall of enough timeouts in a row) while the
    /// kernel's counters still show it, and forgets those older than the recovery window.
    pub(super) fn remember_outages(&mut self, dest: &HashMap<IpAddr, DestStats>, now_ns: u64) {
        let rule = self.outage;
        for (addr, stats) in dest {
            if ebpf::is_outage(stats, rule.timeouts) {
                let at = self.outages.entry(*addr).or_default();
                *at = (*at).max(stats.last_stall_ns);
            }
        }
        self.outages
            .retain(|_, at| now_ns.saturating_sub(*at) < rule.recovery_ns);
    }

    /// Adds each destination's new retransmitted segments to the interface it is routed
    /// through; those toward a destination stalled now or lately (a timeout without
    /// progress) are its recovery from an outage, and counted apart.
    async fn attribute_retransmits(
        &mut self,
        dest: &HashMap<IpAddr, DestStats>,
        watcher: &NetlinkWatcher,
        now_ns: u64,
    ) {
        // Only the last few seconds' retransmitters are of interest.
        self.retransmitting
            .retain(|_, at| now_ns.saturating_sub(*at) < self.outage.recovery_ns);
        for (addr, stats) in dest {
            let (segs_before, events_before) = self
                .dest_retrans
                .insert(*addr, (stats.retrans_segs, stats.retransmits))
                .unwrap_or((0, 0));
            let new = stats.retrans_segs.saturating_sub(segs_before);
            let events = stats.retransmits.saturating_sub(events_before);
            if new == 0 && events == 0 {
                continue;
            }
            self.retransmitting.insert(*addr, now_ns);
            let Some(hop) = self.route_to(watcher, *addr).await else {
                continue;
            };
            let stalled = self.outages.contains_key(addr);
            let totals = self.link_retrans.entry(hop.oif).or_default();
            totals.segs += new;
            totals.events += events;
            if stalled {
                totals.stall_segs += new;
                totals.stall_events += events;
            }
        }
    }
}
