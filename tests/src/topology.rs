//! Veth topologies built over rtnetlink, and what the kernel says about a link: counters, state
//! and the XDP program attached to it.
//!
//! The async functions here act in the namespace of the thread that polls them: run them with
//! [`NetNs::block_on`], or with [`block_on_here`] on a thread already inside the namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage, LinkXdp,
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::netns::{block_on_here, NetNs};
use crate::traffic::{BackgroundPing, Pace, PacedFlow};

/// Ifindex of the veth end in namespace A. Both ends get fixed, distinct ifindexes: the kernel
/// treats a veth whose ifindex differs from its peer's as "urgent" and reports its carrier
/// changes at once instead of batching them (net/core/link_watch.c, `linkwatch_urgent_event`).
pub const A_INDEX: u32 = 10;
/// Ifindex of the veth end in namespace B.
pub const B_INDEX: u32 = 20;

/// Two namespaces joined by a veth pair, each end with an IPv4 /24 and an IPv6 /64 address.
#[derive(Debug)]
pub struct Pair {
    pub a: NetNs,
    pub b: NetNs,
    pub a_if: String,
    pub b_if: String,
    pub a_index: u32,
    pub b_index: u32,
    pub a_v4: Ipv4Addr,
    pub b_v4: Ipv4Addr,
    pub a_v6: Ipv6Addr,
    pub b_v6: Ipv6Addr,
}

/// How [`Pair::with`] builds a pair.
#[derive(Clone, Copy, Debug)]
pub struct PairOptions {
    /// Bring B's end up (A's end always is).
    pub b_up: bool,
    /// Off: IPv6 is disabled in both namespaces before the veth exists, so neither end sends
    /// neighbour discovery, MLD or router solicitations: the link carries nothing unless a
    /// test sends it. The pair's IPv6 addresses are then unused.
    pub ipv6: bool,
    /// Both ends get this same ifindex: the kernel then batches their carrier changes
    /// (linkwatch's delay, docs/kernel-notes.md). `None`: [`A_INDEX`], [`B_INDEX`].
    pub shared_index: Option<u32>,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            b_up: true,
            ipv6: true,
            shared_index: None,
        }
    }
}

impl Pair {
    /// B pings A's IPv4 address in the background: `every` seconds apart (ping's `-i`), at
    /// most `count` echoes or for `limit`.
    pub fn ping_a_from_b(&self, every: &str, count: u32, limit: Duration) -> BackgroundPing {
        BackgroundPing::start(&self.b, IpAddr::V4(self.a_v4), every, count, limit)
    }

    /// A pings B's IPv4 address in the background, as [`Pair::ping_a_from_b`].
    pub fn ping_b_from_a(&self, every: &str, count: u32, limit: Duration) -> BackgroundPing {
        BackgroundPing::start(&self.a, IpAddr::V4(self.b_v4), every, count, limit)
    }

    /// A flow from B to a server on A's IPv4 address at `port`, paced as `pace` says.
    pub fn flow_to_a(&self, port: u16, pace: Pace) -> PacedFlow {
        PacedFlow::start(&self.b, &self.a, IpAddr::V4(self.a_v4), port, pace)
    }

    /// A pair with both ends up.
    pub fn new() -> Self {
        Self::with(PairOptions::default())
    }

    /// A pair whose end in B stays admin down, so nothing reaches B until the test brings it up
    /// (e.g. to take an exact counter baseline first).
    pub fn new_with_b_down() -> Self {
        Self::with(PairOptions {
            b_up: false,
            ..PairOptions::default()
        })
    }

    pub fn with(options: PairOptions) -> Self {
        // 198.18.0.0/15 holds 512 /24s; fd00:6e77::/32 has room for far more /64s.
        let block = crate::next_id() % 512;
        let (hi, lo) = ((block / 256) as u8, (block % 256) as u8);
        let v4 = |host| Ipv4Addr::new(198, 18 + hi, lo, host);
        let v6 = |host| Ipv6Addr::new(0xfd00, 0x6e77, block as u16, 0, 0, 0, 0, host);
        let (a, b) = (NetNs::new(), NetNs::new());
        let (a_if, b_if) = ("nwa0".to_string(), "nwb0".to_string());
        let (a_v4, b_v4, a_v6, b_v6) = (v4(1), v4(2), v6(1), v6(2));
        if !options.ipv6 {
            // `default` covers devices created (or moved in) from now on.
            for ns in [&a, &b] {
                ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
                ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
            }
        }
        let (a_wanted, b_wanted) = options
            .shared_index
            .map_or((A_INDEX, B_INDEX), |index| (index, index));

        let b_file = b.open();
        let b_fd = b_file.as_raw_fd();
        let a_index = a.block_on(async {
            if options.shared_index.is_some() {
                // B has a link with this index in no namespace but its own, so the peer is
                // created there directly rather than moved (a move would keep A's numbering).
                add_veth_with_peer_in(&a_if, a_wanted, &b_if, b_wanted, Some(b_fd)).await;
            } else {
                add_veth(&a_if, a_wanted, &b_if, b_wanted).await;
                let peer = link_index(&b_if).await.expect("the new veth peer is in A");
                move_link(peer, b_fd).await;
            }
            let index = link_index(&a_if).await.expect("the new veth end is in A");
            add_address(index, IpAddr::V4(a_v4), 24).await;
            if options.ipv6 {
                add_address(index, IpAddr::V6(a_v6), 64).await;
            }
            set_link_up(index, true).await;
            index
        });
        drop(b_file);
        let b_index = b.block_on(async {
            let index = link_index(&b_if)
                .await
                .expect("the veth peer was moved into B");
            add_address(index, IpAddr::V4(b_v4), 24).await;
            if options.ipv6 {
                add_address(index, IpAddr::V6(b_v6), 64).await;
            }
            if options.b_up {
                set_link_up(index, true).await;
            }
            index
        });
        assert_eq!(
            (a_index, b_index),
            (a_wanted, b_wanted),
            "the veth ends did not get the ifindexes asked for"
        );
        Pair {
            a,
            b,
            a_if,
            b_if,
            a_index,
            b_index,
            a_v4,
            b_v4,
            a_v6,
            b_v6,
        }
    }

    /// Gives B a default route via A's IPv4 address (the host's verdict needs one).
    pub fn default_route_via_a(&self) {
        let gateway = self.a_v4;
        self.b.block_on(add_default_route(gateway));
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

/// A link's receive counters from IFLA_STATS64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxCounters {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::Sub for RxCounters {
    type Output = RxCounters;
    fn sub(self, earlier: RxCounters) -> RxCounters {
        RxCounters {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// Opens an rtnetlink socket in the current thread's namespace; its connection task runs on the
/// current tokio runtime.
pub fn connect() -> Handle {
    let (connection, handle, _) = rtnetlink::new_connection().expect("open an rtnetlink socket");
    tokio::spawn(connection);
    handle
}

/// Creates a veth pair `name` (ifindex `index`) <-> `peer` (ifindex `peer_index`), both down.
pub async fn add_veth(name: &str, index: u32, peer: &str, peer_index: u32) {
    add_veth_with_peer_in(name, index, peer, peer_index, None).await;
}

/// Like [`add_veth`], with the peer created directly in the namespace open as `peer_ns_fd`.
pub async fn add_veth_with_peer_in(
    name: &str,
    index: u32,
    peer: &str,
    peer_index: u32,
    peer_ns_fd: Option<i32>,
) {
    // LinkVeth's builder cannot set the peer's ifindex, so the peer message is built here: the
    // kernel takes the peer's ifi_index when the first end's index is given too (veth_newlink).
    let mut peer_msg = LinkUnspec::new_with_name(peer).index(peer_index);
    if let Some(fd) = peer_ns_fd {
        peer_msg = peer_msg.setns_by_fd(fd);
    }
    let message = LinkVeth::new(name, peer)
        .index(index)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
        .build();
    connect()
        .link()
        .add(message)
        .execute()
        .await
        .unwrap_or_else(|e| {
            panic!("creating veth {name} (index {index}) <-> {peer} (index {peer_index}): {e}")
        });
}

/// Adds (or replaces) the main table's IPv4 default route via `gateway`.
pub async fn add_default_route(gateway: Ipv4Addr) {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .build();
    connect()
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .unwrap_or_else(|e| panic!("adding a default route via {gateway}: {e}"));
}

/// Moves link `index` into the namespace whose file is open as `ns_fd`.
pub async fn move_link(index: u32, ns_fd: i32) {
    connect()
        .link()
        .set(LinkUnspec::new_with_index(index).setns_by_fd(ns_fd).build())
        .execute()
        .await
        .unwrap_or_else(|e| panic!("moving link {index} to another namespace: {e}"));
}

/// Deletes link `index` (for a veth, both ends).
pub async fn delete_link(index: u32) {
    connect()
        .link()
        .del(index)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("deleting link {index}: {e}"));
}

/// Sets link `index` admin up or down.
pub async fn set_link_up(index: u32, up: bool) {
    let builder = LinkUnspec::new_with_index(index);
    let builder = if up { builder.up() } else { builder.down() };
    connect()
        .link()
        .set(builder.build())
        .execute()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "setting link {index} {}: {e}",
                if up { "up" } else { "down" }
            )
        });
}

/// Adds `address/prefix_len` to link `index`. IPv6 addresses skip duplicate address detection
/// (IFA_F_NODAD), so they are usable at once rather than after about a second.
pub async fn add_address(index: u32, address: IpAddr, prefix_len: u8) {
    let mut request = connect().address().add(index, address, prefix_len);
    if address.is_ipv6() {
        let message = request.message_mut();
        message.header.flags |= AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    request
        .execute()
        .await
        .unwrap_or_else(|e| panic!("adding {address}/{prefix_len} to link {index}: {e}"));
}

/// The ifindex of link `name`, if it exists in this namespace.
pub async fn link_index(name: &str) -> Option<u32> {
    // The handle must outlive the stream: the connection task stops once every handle is gone.
    let handle = connect();
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Some(link.header.index),
        Ok(None) => None,
        // The kernel answers a lookup of a missing name with ENODEV.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => None,
        Err(e) => panic!("looking up link {name}: {e}"),
    }
}

/// The kernel's message for link `index`; panics if the link does not exist.
pub async fn link(index: u32) -> LinkMessage {
    connect()
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .unwrap_or_else(|e| panic!("reading link {index}: {e}"))
        .unwrap_or_else(|| panic!("link {index} does not exist"))
}

/// All links of this namespace as (ifindex, name).
pub async fn links() -> Vec<(u32, String)> {
    let messages: Vec<LinkMessage> = connect()
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing links: {e}"));
    messages
        .iter()
        .map(|link| (link.header.index, link_name(link)))
        .collect()
}

/// Link `index`'s receive counters (IFLA_STATS64). Read over netlink because /sys/class/net
/// keeps showing the namespace sysfs was mounted in.
pub async fn rx_counters(index: u32) -> RxCounters {
    let link = link(index).await;
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Stats64(stats) => Some(RxCounters {
                packets: stats.rx_packets,
                bytes: stats.rx_bytes,
            }),
            _ => None,
        })
        .unwrap_or_else(|| panic!("link {index} has no IFLA_STATS64"))
}

/// How many times link `index`'s carrier changed since it was created (IFLA_CARRIER_CHANGES).
pub async fn carrier_changes(index: u32) -> u32 {
    let link = link(index).await;
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::CarrierChanges(changes) => Some(*changes),
            _ => None,
        })
        .unwrap_or_else(|| panic!("link {index} has no IFLA_CARRIER_CHANGES"))
}

/// The id of the XDP program attached to link `index`, in any mode, if there is one.
pub async fn xdp_prog_id(index: u32) -> Option<u32> {
    let link = link(index).await;
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                LinkXdp::ProgId(id) | LinkXdp::SkbProgId(id) | LinkXdp::DrvProgId(id)
                    if *id != 0 =>
                {
                    Some(*id)
                }
                _ => None,
            }),
            _ => None,
        })
}

/// The ids of the programs attached at tc ingress (tcx) of link `index`, first in line first.
pub async fn tcx_ingress_prog_ids(index: u32) -> Vec<u32> {
    use aya::programs::{tc::TcAttachType, SchedClassifier};
    let name = link_name(&link(index).await);
    match SchedClassifier::query_tcx(&name, TcAttachType::Ingress) {
        Ok((_, programs)) => programs.iter().map(|p| p.id()).collect(),
        Err(e) => panic!("querying the tcx ingress programs of {name} (index {index}): {e}"),
    }
}

/// The id of a receive counter on link `index`, at either hook: the XDP program if one is
/// attached, else the first program at tc ingress.
pub async fn rx_prog_id(index: u32) -> Option<u32> {
    match xdp_prog_id(index).await {
        Some(id) => Some(id),
        None => tcx_ingress_prog_ids(index).await.first().copied(),
    }
}

/// Whether link `index` is admin up (IFF_UP).
pub async fn is_admin_up(index: u32) -> bool {
    link(index).await.header.flags.contains(LinkFlags::Up)
}

fn link_name(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Link up/down from a thread already inside the namespace.
pub fn set_link_up_here(index: u32, up: bool) {
    block_on_here(set_link_up(index, up));
}

/// Receive counters from a thread already inside the namespace.
pub fn rx_counters_here(index: u32) -> RxCounters {
    block_on_here(rx_counters(index))
}

/// The receive counter's program id at either hook, from a thread already inside the
/// namespace.
pub fn rx_prog_id_here(index: u32) -> Option<u32> {
    block_on_here(rx_prog_id(index))
}
