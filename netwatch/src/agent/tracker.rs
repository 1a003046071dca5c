//! Keeps the tables netlink reports (links, routes, neighbours) and the endpoints' probe
//! results, and builds from them and the kernel programs' maps the observations the
//! classifier judges.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use tracing::warn;

use crate::{
    ebpf::{DestStats, Probes},
    netlink::{Link, NeighState, NetEvent, NetlinkWatcher, Route, Snapshot},
    state::{EndpointObservation, LinkObservation, Observations, ProbeResult},
};

/// An endpoint to judge: a name and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub name: String,
    pub address: SocketAddr,
}

#[derive(Default)]
pub struct Tracker {
    pub links: HashMap<u32, Link>,
    routes: Vec<Route>,
    neighbours: HashMap<(u32, IpAddr), NeighState>,
    endpoints: Vec<EndpointSpec>,
    probes: HashMap<String, ProbeResult>,
    /// Destination to the interface it is routed through; cleared when routes change.
    route_cache: HashMap<IpAddr, Option<u32>>,
    /// Retransmits per destination when last read, and the running total per interface.
    dest_retransmits: HashMap<IpAddr, u64>,
    link_retransmits: HashMap<u32, u64>,
}

impl Tracker {
    pub fn new(endpoints: Vec<EndpointSpec>) -> Self {
        Self {
            endpoints,
            ..Self::default()
        }
    }

    pub fn load(&mut self, snapshot: &Snapshot) {
        self.links = snapshot
            .links
            .iter()
            .map(|l| (l.ifindex, l.clone()))
            .collect();
        self.routes.clone_from(&snapshot.routes);
        self.neighbours = snapshot
            .neighbours
            .iter()
            .map(|n| ((n.ifindex, n.addr), n.state))
            .collect();
        self.route_cache.clear();
    }

    pub fn apply(&mut self, event: &NetEvent) {
        match event {
            NetEvent::LinkUpdated(link) => {
                let carrier_back = self
                    .links
                    .get(&link.ifindex)
                    .is_some_and(|before| !before.carrier)
                    && link.carrier;
                if carrier_back {
                    // Resolution failures from while the carrier was gone say nothing about
                    // now, and the kernel keeps FAILED entries until traffic asks again: the
                    // link would stay Down until something sent, which a retry waiting for
                    // Up never does.
                    self.neighbours
                        .retain(|(ifindex, _), _| *ifindex != link.ifindex);
                }
                self.links.insert(link.ifindex, link.clone());
            }
            NetEvent::LinkRemoved(link) => {
                self.links.remove(&link.ifindex);
                self.link_retransmits.remove(&link.ifindex);
            }
            NetEvent::RouteAdded(route) => {
                self.routes.retain(|r| !same_route(r, route));
                self.routes.push(route.clone());
                self.route_cache.clear();
            }
            NetEvent::RouteRemoved(route) => {
                self.routes.retain(|r| !same_route(r, route));
                self.route_cache.clear();
            }
            NetEvent::NeighbourUpdated(n) => {
                self.neighbours.insert((n.ifindex, n.addr), n.state);
            }
            NetEvent::NeighbourRemoved(n) => {
                self.neighbours.remove(&(n.ifindex, n.addr));
            }
            NetEvent::Resynced(snapshot) => self.load(snapshot),
            NetEvent::AddressAdded(_) | NetEvent::AddressRemoved(_) => {}
        }
    }

    /// Retransmits attributed to `ifindex` since the agent started (as of the last
    /// classification, which refreshes it at least every 500 ms).
    pub fn link_retransmits(&self, ifindex: u32) -> u64 {
        self.link_retransmits.get(&ifindex).copied().unwrap_or(0)
    }

    pub fn set_probe(&mut self, endpoint: &str, result: ProbeResult) {
        self.probes.insert(endpoint.to_string(), result);
    }

    /// The interface toward `addr`, from the cache or the kernel.
    pub async fn route_to(&mut self, watcher: &NetlinkWatcher, addr: IpAddr) -> Option<u32> {
        if let Some(oif) = self.route_cache.get(&addr) {
            return *oif;
        }
        let oif = watcher.route_to(addr).await.unwrap_or_else(|e| {
            warn!(error = %e, %addr, "route lookup failed");
            None
        });
        self.route_cache.insert(addr, oif);
        oif
    }

    /// Everything the classifier needs, now.
    pub async fn observe(&mut self, probes: &Probes, watcher: &NetlinkWatcher) -> Observations {
        let dest = probes.dest_stats().unwrap_or_else(|e| {
            warn!(error = %e, "TCP counters unavailable this round");
            HashMap::new()
        });
        self.attribute_retransmits(&dest, watcher).await;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for spec in self.endpoints.clone() {
            let ip = spec.address.ip();
            endpoints.push(EndpointObservation {
                oif: self.route_to(watcher, ip).await,
                tcp: dest.get(&ip).copied().unwrap_or_default(),
                rx: probes.source_rx(ip).ok().flatten(),
                probe: self.probes.get(&spec.name).cloned(),
                name: spec.name,
                address: spec.address,
            });
        }
        let links = self
            .links
            .values()
            .map(|link| (link.ifindex, self.link_observation(link, probes)))
            .collect::<BTreeMap<_, _>>();
        Observations { links, endpoints }
    }

    fn link_observation(&self, link: &Link, probes: &Probes) -> LinkObservation {
        let default_routes: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.is_default() && r.in_main_table() && r.oifs.contains(&link.ifindex))
            .collect();
        let gateway = default_routes
            .iter()
            .find_map(|r| r.gateway)
            .map(|gw| (gw, self.neighbours.get(&(link.ifindex, gw)).copied()));
        LinkObservation {
            xdp_rx: probes.xdp_attached(link.ifindex).then(|| {
                probes
                    .iface_rx(link.ifindex)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
            retransmits: self.link_retransmits(link.ifindex),
            default_route: !default_routes.is_empty(),
            gateway,
            link: link.clone(),
        }
    }

    /// Adds each destination's new retransmits to the interface it is routed through.
    async fn attribute_retransmits(
        &mut self,
        dest: &HashMap<IpAddr, DestStats>,
        watcher: &NetlinkWatcher,
    ) {
        for (addr, stats) in dest {
            let before = self
                .dest_retransmits
                .insert(*addr, stats.retransmits)
                .unwrap_or(0);
            let new = stats.retransmits.saturating_sub(before);
            if new > 0 {
                if let Some(oif) = self.route_to(watcher, *addr).await {
                    *self.link_retransmits.entry(oif).or_insert(0) += new;
                }
            }
        }
    }
}

fn same_route(a: &Route, b: &Route) -> bool {
    a.destination == b.destination
        && a.prefix_len == b.prefix_len
        && a.table == b.table
        && a.priority == b.priority
        && a.ipv6 == b.ipv6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{LinkStats, Neighbour, OperState};

    fn link(carrier: bool) -> Link {
        Link {
            ifindex: 2,
            name: "eth0".into(),
            admin_up: true,
            carrier,
            oper: if carrier {
                OperState::Up
            } else {
                OperState::LowerLayerDown
            },
            mtu: 1500,
            mac: None,
            loopback: false,
            carrier_changes: 0,
            xdp_prog_id: None,
            stats: LinkStats::default(),
        }
    }

    #[test]
    fn a_failed_gateway_is_forgotten_when_the_carrier_comes_back() {
        let mut tracker = Tracker::default();
        let gateway = Neighbour {
            ifindex: 2,
            addr: "198.18.0.1".parse().unwrap(),
            state: NeighState::Failed,
        };
        tracker.apply(&NetEvent::LinkUpdated(link(false)));
        tracker.apply(&NetEvent::NeighbourUpdated(gateway));
        assert_eq!(tracker.neighbours.len(), 1);
        tracker.apply(&NetEvent::LinkUpdated(link(false)));
        assert_eq!(
            tracker.neighbours.len(),
            1,
            "still no carrier: still failed"
        );
        tracker.apply(&NetEvent::LinkUpdated(link(true)));
        assert!(tracker.neighbours.is_empty());
    }
}
