//! A unicast route, decoded from an rtnetlink route message.

use std::net::IpAddr;

use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network; `None` with `prefix_len` 0 is a default route.
    pub destination: Option<IpAddr>,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Output interfaces: one, or several for a multipath route.
    pub oifs: Vec<u32>,
    pub table: u32,
    pub priority: u32,
    pub ipv6: bool,
}

impl Route {
    /// Decodes unicast routes; local, broadcast and other kinds give `None`.
    pub fn from_message(message: &RouteMessage) -> Option<Self> {
        if message.header.kind != RouteType::Unicast {
            return None;
        }
        let mut route = Self {
            destination: None,
            prefix_len: message.header.destination_prefix_length,
            gateway: None,
            oifs: Vec::new(),
            table: u32::from(message.header.table),
            priority: 0,
            ipv6: message.header.address_family == rtnetlink::packet_route::AddressFamily::Inet6,
        };
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Destination(addr) => route.destination = ip(addr),
                RouteAttribute::Gateway(addr) => route.gateway = ip(addr),
                RouteAttribute::Oif(index) => route.oifs.push(*index),
                RouteAttribute::Table(table) => route.table = *table,
                RouteAttribute::Priority(priority) => route.priority = *priority,
                RouteAttribute::MultiPath(hops) => route
                    .oifs
                    .extend(hops.iter().map(|hop| hop.interface_index)),
                _ => {}
            }
        }
        Some(route)
    }

    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }

    /// Only main-table routes decide which link carries the default route.
    pub fn in_main_table(&self) -> bool {
        self.table == u32::from(RouteHeader::RT_TABLE_MAIN)
    }
}

fn ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Where the kernel sends a packet for one address: the interface, and the gateway unless
/// the address is on that link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub oif: u32,
    pub gateway: Option<IpAddr>,
}

impl NextHop {
    /// From an RTM_GETROUTE reply; `None` if it names no interface.
    pub fn from_reply(reply: &RouteMessage) -> Option<Self> {
        let mut oif = None;
        let mut gateway = None;
        for attribute in &reply.attributes {
            match attribute {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Gateway(addr) => gateway = ip(addr),
                _ => {}
            }
        }
        Some(Self { oif: oif?, gateway })
    }

    /// The neighbour on the link that the packet goes to: the gateway, or `dest` itself.
    pub fn neighbour(&self, dest: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dest)
    }
}
