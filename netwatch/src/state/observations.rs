//! What the classifier judges by: a plain snapshot of links, routes, neighbours and
//! endpoints, built by the monitor from netlink and the kernel programs. No I/O here.

use std::{collections::BTreeMap, net::IpAddr, net::SocketAddr};

pub use crate::ebpf::SourceRx;
use crate::{
    ebpf::{DestStats, IfaceRx},
    netlink::{Link, NeighState},
};

#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub links: BTreeMap<u32, LinkObservation>,
    pub endpoints: Vec<EndpointObservation>,
}

#[derive(Clone, Debug)]
pub struct LinkObservation {
    pub link: Link,
    /// What XDP counted, if it is attached here.
    pub xdp_rx: Option<IfaceRx>,
    /// Retransmits toward destinations routed through this link, since the agent started.
    pub retransmits: u64,
    /// Whether a main-table default route leaves through this link.
    pub default_route: bool,
    /// The default route's gateway through this link, and its neighbour state if known.
    pub gateway: Option<(IpAddr, Option<NeighState>)>,
}

#[derive(Clone, Debug)]
pub struct EndpointObservation {
    pub name: String,
    pub address: SocketAddr,
    /// The interface the kernel routes it through; `None` if unreachable.
    pub oif: Option<u32>,
    /// TCP signals toward its address, since the agent started.
    pub tcp: DestStats,
    /// Packets from its address seen by XDP, if XDP watches the link it arrives on.
    pub rx: Option<SourceRx>,
    /// The latest configured probe, if probing is on.
    pub probe: Option<ProbeResult>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub at_ns: u64,
    /// `None` when the connect succeeded; else why it failed.
    pub error: Option<String>,
}
