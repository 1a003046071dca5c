//! What the classifier judges by: a plain snapshot of links, routes, neighbours and
//! endpoints, built by the agent from netlink and the kernel programs. No I/O here.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

pub use crate::ebpf::{outage_lately, DestStats, IfaceRx, IfaceTx, PeerStats};
use crate::netlink::{Link, NeighState};

#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub links: BTreeMap<u32, LinkObservation>,
    pub endpoints: Vec<EndpointObservation>,
}

#[derive(Clone, Debug)]
pub struct LinkObservation {
    /// Its state and the kernel's own counters.
    pub link: Link,
    /// What XDP counted, if it is attached here.
    pub xdp_rx: Option<IfaceRx>,
    /// TCP data segments sent, if the tc egress counter is attached here.
    pub tx: Option<IfaceTx>,
    /// Segments retransmitted toward destinations routed through this link since the agent
    /// started, and the retransmits (buffers) that carried them...
    pub retrans_segs: u64,
    pub retransmits: u64,
    /// ...of which toward destinations stalled, or recovering from a stall (timeouts
    /// without progress): an outage's aftermath, not loss.
    pub stall_retrans_segs: u64,
    pub stall_retransmits: u64,
    /// Whether a main-table default route leaves through this link.
    pub default_route: bool,
    /// The default route's gateway through this link.
    pub gateway: Option<GatewayObservation>,
    /// The neighbour on this link the kernel confirmed reachable most recently, and when
    /// (CLOCK_MONOTONIC): an answer on the link, so evidence that it works.
    pub neighbour_confirmed: Option<(IpAddr, u64)>,
}

/// The default gateway as the kernel's neighbour table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayObservation {
    pub addr: IpAddr,
    /// Its neighbour entry's state; `None` if the kernel has no entry.
    pub state: Option<NeighState>,
    /// Resolution failed and nothing answered since.
    pub failing: bool,
    /// CLOCK_MONOTONIC nanoseconds when the kernel last confirmed it reachable.
    pub confirmed_at_ns: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct EndpointObservation {
    pub name: String,
    /// As configured: `address:port` or `host:port`.
    pub target: String,
    /// Where it is; `None` while its host name is not resolved.
    pub address: Option<SocketAddr>,
    /// Why it has no address yet.
    pub unresolved: Option<String>,
    /// The interface the kernel routes it through; `None` if unreachable (or unresolved).
    pub oif: Option<u32>,
    /// TCP signals toward its address, since the agent started.
    pub tcp: DestStats,
    /// When its latest outage (a stall of enough timeouts in a row) last timed out, as the
    /// agent saw it: the kernel's counters keep only the latest stall.
    pub last_outage_ns: Option<u64>,
    /// Traffic with it counted by the programs, where they watch it.
    pub peer: Option<PeerStats>,
    /// The latest configured probe, if probing is on.
    pub probe: Option<ProbeResult>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub at_ns: u64,
    /// `None` when the connect succeeded; else why it failed.
    pub error: Option<String>,
}
