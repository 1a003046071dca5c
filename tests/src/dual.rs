//! `Dual`: a host B with two uplinks to one far namespace A, the way a host with two NICs
//! reaches the same network: default routes through both at different metrics, and a
//! server address on A that both paths lead to.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use rtnetlink::RouteMessageBuilder;

use crate::netns::NetNs;
use crate::topology::{add_address, add_veth, connect, link_index, move_link, set_link_up};

/// B's uplinks and A's ends of them, with fixed distinct ifindexes (see topology.rs).
pub const B_L1: u32 = 11;
pub const B_L2: u32 = 12;
pub const A_P1: u32 = 21;
pub const A_P2: u32 = 22;

#[derive(Debug)]
pub struct Dual {
    pub a: NetNs,
    pub b: NetNs,
    /// B's primary uplink (default route metric 100) and secondary (metric 200).
    pub l1: String,
    pub l2: String,
    /// A's ends of them.
    pub p1: String,
    pub p2: String,
    pub b_l1: Ipv4Addr,
    pub b_l2: Ipv4Addr,
    pub a_p1: Ipv4Addr,
    pub a_p2: Ipv4Addr,
    /// The server address on A's loopback, reachable through either uplink.
    pub server: Ipv4Addr,
}

impl Dual {
    /// Builds it with failover on: B ignores routes whose link lost its carrier
    /// (`ignore_routes_with_linkdown`), as hosts with two uplinks are set up to, and A
    /// routes B's primary subnet back through the secondary when the primary is down.
    pub fn new() -> Self {
        let (s1, s2, s3) = (subnet(), subnet(), subnet());
        let dual = Dual {
            a: NetNs::new(),
            b: NetNs::new(),
            l1: "nwl1".into(),
            l2: "nwl2".into(),
            p1: "nwp1".into(),
            p2: "nwp2".into(),
            b_l1: s1(2),
            b_l2: s2(2),
            a_p1: s1(1),
            a_p2: s2(1),
            server: s3(9),
        };
        for ns in [&dual.a, &dual.b] {
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
            ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
            ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        }
        dual.b
            .sysctl("net.ipv4.conf.all.ignore_routes_with_linkdown", "1");
        let a_file = dual.a.open();
        let a_fd = a_file.as_raw_fd();
        dual.b.block_on(async {
            for (name, index, peer, peer_index, addr) in [
                (&dual.l1, B_L1, &dual.p1, A_P1, dual.b_l1),
                (&dual.l2, B_L2, &dual.p2, A_P2, dual.b_l2),
            ] {
                add_veth(name, index, peer, peer_index).await;
                let peer = link_index(peer).await.expect("the new veth peer is in B");
                move_link(peer, a_fd).await;
                add_address(index, IpAddr::V4(addr), 24).await;
                set_link_up(index, true).await;
            }
            add_gateway_route(None, dual.a_p1, 100).await;
            add_gateway_route(None, dual.a_p2, 200).await;
        });
        drop(a_file);
        dual.a.block_on(async {
            set_link_up(1, true).await;
            add_address(1, IpAddr::V4(dual.server), 32).await;
            for (index, addr) in [(A_P1, dual.a_p1), (A_P2, dual.a_p2)] {
                add_address(index, IpAddr::V4(addr), 24).await;
                set_link_up(index, true).await;
            }
            // B's primary subnet, the long way round, for when the primary is down.
            let primary = Ipv4Addr::from(u32::from(dual.b_l1) & 0xffff_ff00);
            add_gateway_route(Some((primary, 24)), dual.b_l2, 200).await;
        });
        dual
    }
}

impl Default for Dual {
    fn default() -> Self {
        Self::new()
    }
}

/// A /24 of its own from 198.18.0.0/15: host number to address.
fn subnet() -> impl Fn(u8) -> Ipv4Addr {
    let id = crate::next_id() % 512;
    move |host| Ipv4Addr::new(198, 18 + (id / 256) as u8, (id % 256) as u8, host)
}

/// Adds a main-table route to `dest` (the default route when `None`) via `gateway`, at
/// `metric`.
pub async fn add_gateway_route(dest: Option<(Ipv4Addr, u8)>, gateway: Ipv4Addr, metric: u32) {
    let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .priority(metric);
    if let Some((addr, prefix)) = dest {
        builder = builder.destination_prefix(addr, prefix);
    }
    connect()
        .route()
        .add(builder.build())
        .execute()
        .await
        .unwrap_or_else(|e| {
            panic!("adding a route to {dest:?} via {gateway} metric {metric}: {e}")
        });
}
