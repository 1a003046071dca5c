//! Keeps the tables netlink reports (links, routes, neighbours), the endpoints' addresses and
//! probe results, and builds from them and the kernel programs' maps the observations the
//! classifier judges (`observe.rs`).
//!
//! The kernel changes some of these without telling netlink listeners (routes flushed when a
//! link goes down or loses an address, routes marked linkdown on carrier loss), so every
//! change that can cause that marks the routes stale: the agent re-reads them before it
//! judges again, and forgets every cached next hop.

mod neighbours;
mod observe;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    daemon::{EndpointAddress, InterfaceSelection},
    netlink::{Link, NetEvent, NextHop, Route, Snapshot},
    state::ProbeResult,
};
use neighbours::Neighbours;

/// An endpoint to judge: a name and where it is (an address, or a host name resolved in
/// the background).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub name: String,
    pub address: EndpointAddress,
}

/// Where an endpoint's address stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Address(SocketAddr),
    /// Not resolved (yet): why, for people.
    Pending(String),
}

pub struct Tracker {
    pub links: HashMap<u32, Link>,
    routes: Vec<Route>,
    neighbours: Neighbours,
    endpoints: Vec<(EndpointSpec, Resolved)>,
    probes: HashMap<String, ProbeResult>,
    /// Destination to its next hop (`None`: unreachable); forgotten whenever routes may have
    /// changed.
    route_cache: HashMap<IpAddr, Option<NextHop>>,
    /// Whether the kernel may have changed routes without saying so since they were read.
    routes_stale: bool,
    /// Retransmitted segments and retransmits per destination when last read, and their
    /// running totals per interface: all of them, and those toward destinations
    /// recovering from a stall.
    dest_retrans: HashMap<IpAddr, (u64, u64)>,
    /// Destinations that retransmitted lately, and when they last did.
    retransmitting: HashMap<IpAddr, u64>,
    /// Each destination's latest outage as the agent saw it: the time of its last timeout.
    /// The kernel keeps only the latest stall, so a shorter one in the recovery (a burst of
    /// queued data overrunning the receiver) would otherwise hide the outage it follows.
    outages: HashMap<IpAddr, u64>,
    link_retrans: HashMap<u32, RetransTotals>,
    /// Which interfaces are watched by name.
    selection: InterfaceSelection,
    /// The links the verdict rests on (a default route, an endpoint's route), as of the
    /// last observation: watched whatever their name.
    needed: HashSet<u32>,
    /// When a destination's retransmits are an outage's recovery, not loss.
    outage: OutageRule,
}

/// How long after a stall of how many timeouts in a row a destination's retransmits are
/// its recovery (see `ebpf::outage_lately`).
#[derive(Clone, Copy, Debug)]
pub struct OutageRule {
    pub recovery_ns: u64,
    pub timeouts: u32,
}

/// Retransmitted segments attributed to one interface since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransTotals {
    pub segs: u64,
    /// The retransmits (buffers) that carried them.
    pub events: u64,
    /// Of those, the ones toward destinations in a stall or recovering from one.
    pub stall_segs: u64,
    pub stall_events: u64,
}

impl Tracker {
    pub fn new(endpoints: Vec<EndpointSpec>, outage: OutageRule) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|spec| {
                let resolved = match &spec.address {
                    EndpointAddress::Ip(addr) => Resolved::Address(*addr),
                    EndpointAddress::Host { host, .. } => {
                        Resolved::Pending(format!("resolving {host}"))
                    }
                };
                (spec, resolved)
            })
            .collect();
        Self {
            links: HashMap::new(),
            routes: Vec::new(),
            neighbours: Neighbours::default(),
            endpoints,
            probes: HashMap::new(),
            route_cache: HashMap::new(),
            routes_stale: false,
            dest_retrans: HashMap::new(),
            retransmitting: HashMap::new(),
            outages: HashMap::new(),
            link_retrans: HashMap::new(),
            selection: InterfaceSelection::everything(),
            needed: HashSet::new(),
            outage,
        }
    }

    /// Watches only the interfaces `selection` chooses (and those the verdict rests on).
    pub fn watching(mut self, selection: InterfaceSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Whether `link` is watched: counted, judged, listed.
    pub fn watches(&self, link: &Link) -> bool {
        !link.loopback
            && (self.selection.chooses(&link.name) || self.needed.contains(&link.ifindex))
    }

    /// The links the verdict rests on, as of the last observation.
    pub fn needed(&self) -> impl Iterator<Item = &Link> {
        self.needed.iter().filter_map(|i| self.links.get(i))
    }

    /// Takes a full dump as the truth: links, routes and neighbours that are not in it are gone.
    pub fn load(&mut self, snapshot: &Snapshot, now_ns: u64) {
        self.links = snapshot
            .links
            .iter()
            .map(|l| (l.ifindex, l.clone()))
            .collect();
        self.link_retrans.retain(|i, _| self.links.contains_key(i));
        self.set_routes(snapshot.routes.clone());
        self.neighbours.load(&snapshot.neighbours, now_ns);
    }

    /// Replaces the routes with a fresh read (and the neighbours, which go with them).
    pub fn set_routes(&mut self, routes: Vec<Route>) {
        self.routes = routes;
        self.route_cache.clear();
        self.routes_stale = false;
    }

    pub fn set_neighbours(&mut self, neighbours: &[crate::netlink::Neighbour], now_ns: u64) {
        self.neighbours.load(neighbours, now_ns);
    }

    /// Whether routes must be re-read before the next judgement.
    pub fn routes_stale(&self) -> bool {
        self.routes_stale
    }

    pub fn apply(&mut self, event: &NetEvent, now_ns: u64) {
        match event {
            NetEvent::LinkUpdated(link) => {
                let before = self.links.get(&link.ifindex);
                let carrier_back = before.is_some_and(|b| !b.carrier) && link.carrier;
                let state_moved = before.is_none_or(|b| {
                    b.admin_up != link.admin_up || b.carrier != link.carrier || b.oper != link.oper
                });
                if carrier_back {
                    // Resolution failures from while the carrier was gone say nothing about
                    // now, and the kernel keeps FAILED entries until traffic asks again: the
                    // link would stay Down until something sent, which a retry waiting for
                    // Up never does.
                    self.neighbours.forget_link(link.ifindex);
                }
                if state_moved {
                    self.mark_routes_stale();
                }
                self.links.insert(link.ifindex, link.clone());
            }
            NetEvent::LinkRemoved(link) => {
                self.links.remove(&link.ifindex);
                self.link_retrans.remove(&link.ifindex);
                self.neighbours.forget_link(link.ifindex);
                self.mark_routes_stale();
            }
            NetEvent::AddressAdded(_) | NetEvent::AddressRemoved(_) => self.mark_routes_stale(),
            NetEvent::RouteAdded(route) => {
                self.routes.retain(|r| !same_route(r, route));
                self.routes.push(route.clone());
                self.route_cache.clear();
            }
            NetEvent::RouteRemoved(route) => {
                self.routes.retain(|r| !same_route(r, route));
                self.route_cache.clear();
            }
            NetEvent::NeighbourUpdated(n) => self.neighbours.update(n, now_ns),
            NetEvent::NeighbourRemoved(n) => self.neighbours.remove(n),
            NetEvent::Overrun => {}
        }
    }

    fn mark_routes_stale(&mut self) {
        self.routes_stale = true;
        self.route_cache.clear();
    }

    /// Retransmitted segments attributed to `ifindex` since the agent started (as of the last
    /// judgement, which refreshes them at least every 500 ms).
    pub fn link_retrans(&self, ifindex: u32) -> RetransTotals {
        self.link_retrans.get(&ifindex).copied().unwrap_or_default()
    }

    pub fn set_probe(&mut self, endpoint: &str, result: ProbeResult) {
        self.probes.insert(endpoint.to_string(), result);
    }

    /// Records where endpoint `name` resolved to (or why it did not); returns whether its
    /// address changed.
    pub fn set_resolved(&mut self, name: &str, resolved: Resolved) -> bool {
        let Some((_, current)) = self.endpoints.iter_mut().find(|(s, _)| s.name == name) else {
            return false;
        };
        let keep_address = matches!(
            (&*current, &resolved),
            (Resolved::Address(_), Resolved::Pending(_))
        );
        if keep_address {
            // A failed re-resolution keeps the last address: the name still meant it.
            return false;
        }
        let changed = *current != resolved;
        *current = resolved;
        changed
    }

    /// The endpoints' resolved addresses, for the programs to watch.
    pub fn endpoint_addresses(&self) -> Vec<IpAddr> {
        self.endpoints
            .iter()
            .filter_map(|(_, r)| match r {
                Resolved::Address(addr) => Some(addr.ip()),
                Resolved::Pending(_) => None,
            })
            .collect()
    }

    /// The default gateways, by the interface they are reached through.
    pub fn default_gateways(&self) -> Vec<(u32, IpAddr)> {
        let mut gateways: Vec<(u32, IpAddr)> = self
            .routes
            .iter()
            .filter(|r| r.is_default() && r.in_main_table())
            .flat_map(|r| {
                r.oifs
                    .iter()
                    .filter_map(move |oif| Some((*oif, r.gateway?)))
            })
            .collect();
        gateways.sort();
        gateways.dedup();
        gateways
    }

    /// The next hop toward `addr`, from the cache or the kernel.
    pub async fn route_to(
        &mut self,
        watcher: &crate::netlink::NetlinkWatcher,
        addr: IpAddr,
    ) -> Option<NextHop> {
        if let Some(hop) = self.route_cache.get(&addr) {
            return *hop;
        }
        let hop = watcher.route_to(addr).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, %addr, "route lookup failed");
            None
        });
        self.route_cache.insert(addr, hop);
        hop
    }

    /// The (ifindex, neighbour) the kernel sends endpoint `name`'s traffic to, if it is
    /// resolved and routable.
    pub async fn endpoint_next_hop(
        &mut self,
        name: &str,
        watcher: &crate::netlink::NetlinkWatcher,
    ) -> Option<(u32, IpAddr)> {
        let address = self
            .endpoints
            .iter()
            .find_map(|(spec, resolved)| match resolved {
                Resolved::Address(addr) if spec.name == name => Some(addr.ip()),
                _ => None,
            })?;
        let hop = self.route_to(watcher, address).await?;
        Some((hop.oif, hop.neighbour(address)))
    }

    /// The next hops of every resolved, routable endpoint.
    pub async fn endpoint_next_hops(
        &mut self,
        watcher: &crate::netlink::NetlinkWatcher,
    ) -> Vec<(u32, IpAddr)> {
        let mut hops = Vec::new();
        for ip in self.endpoint_addresses() {
            if let Some(hop) = self.route_to(watcher, ip).await {
                hops.push((hop.oif, hop.neighbour(ip)));
            }
        }
        hops
    }

    /// The next hops of the destinations that retransmitted lately (at most a few, the
    /// latest first).
    pub async fn retransmitting_next_hops(
        &mut self,
        watcher: &crate::netlink::NetlinkWatcher,
    ) -> Vec<(u32, IpAddr)> {
        const MOST: usize = 8;
        let mut latest: Vec<(IpAddr, u64)> =
            self.retransmitting.iter().map(|(a, t)| (*a, *t)).collect();
        latest.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        let mut hops = Vec::new();
        for (addr, _) in latest.into_iter().take(MOST) {
            if let Some(hop) = self.route_to(watcher, addr).await {
                hops.push((hop.oif, hop.neighbour(addr)));
            }
        }
        hops
    }

    /// When the kernel last confirmed `addr` on `ifindex` reachable.
    pub fn neighbour_confirmed_at(&self, ifindex: u32, addr: IpAddr) -> Option<u64> {
        self.neighbours.get(ifindex, addr)?.confirmed_at_ns
    }

    /// The neighbour state the tracker holds for `addr` on `ifindex`.
    pub fn neighbour_state(
        &self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Option<crate::netlink::NeighState> {
        self.neighbours.get(ifindex, addr).map(|n| n.state)
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
mod tests;
