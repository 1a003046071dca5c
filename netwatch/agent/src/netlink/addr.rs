//! An interface address, decoded from an rtnetlink address message.

use std::net::IpAddr;

use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Address {
    /// The interface's own address: IFA_LOCAL where present (it differs from IFA_ADDRESS only
    /// on point-to-point links, where IFA_ADDRESS is the peer), else IFA_ADDRESS.
    pub fn from_message(message: &AddressMessage) -> Option<Self> {
        let mut address = None;
        let mut local = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Address(addr) => address = Some(*addr),
                AddressAttribute::Local(addr) => local = Some(*addr),
                _ => {}
            }
        }
        Some(Self {
            ifindex: message.header.index,
            addr: local.or(address)?,
            prefix_len: message.header.prefix_len,
        })
    }
}
