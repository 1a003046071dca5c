//! A network interface as netwatch sees it, decoded from an rtnetlink link message.

use std::fmt;

use rtnetlink::packet_route::link::{
    LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, LinkXdp, State,
};

/// An interface's state and counters at the time of one link message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// IFF_UP: the administrator enabled it.
    pub admin_up: bool,
    /// IFF_LOWER_UP: the physical layer (or veth peer) has carrier.
    pub carrier: bool,
    pub oper: OperState,
    pub mtu: u32,
    pub mac: Option<MacAddr>,
    pub loopback: bool,
    /// IFLA_CARRIER_CHANGES: counts every carrier change, including those whose events the
    /// kernel coalesced away.
    pub carrier_changes: u32,
    /// The XDP program attached to it, if any (ours or another tool's).
    pub xdp_prog_id: Option<u32>,
    pub stats: LinkStats,
}

/// IFLA_STATS64 counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// RFC 2863 operational state, as the kernel reports it in IFLA_OPERSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl OperState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::NotPresent => "notpresent",
            Self::Down => "down",
            Self::LowerLayerDown => "lowerlayerdown",
            Self::Testing => "testing",
            Self::Dormant => "dormant",
            Self::Up => "up",
        }
    }

    fn from_netlink(state: &State) -> Self {
        match state {
            State::NotPresent => Self::NotPresent,
            State::Down => Self::Down,
            State::LowerLayerDown => Self::LowerLayerDown,
            State::Testing => Self::Testing,
            State::Dormant => Self::Dormant,
            State::Up => Self::Up,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Link {
    /// Decodes a link message; `None` if it carries no interface name (never seen in practice).
    pub fn from_message(message: &LinkMessage) -> Option<Self> {
        let flags = message.header.flags;
        let mut link = Self {
            ifindex: message.header.index,
            name: String::new(),
            admin_up: flags.contains(LinkFlags::Up),
            carrier: flags.contains(LinkFlags::LowerUp),
            oper: OperState::Unknown,
            mtu: 0,
            mac: None,
            loopback: flags.contains(LinkFlags::Loopback)
                || message.header.link_layer_type == LinkLayerType::Loopback,
            carrier_changes: 0,
            xdp_prog_id: None,
            stats: LinkStats::default(),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::OperState(state) => link.oper = OperState::from_netlink(state),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Address(bytes) => {
                    link.mac = bytes.as_slice().try_into().ok().map(MacAddr)
                }
                LinkAttribute::CarrierChanges(count) => link.carrier_changes = *count,
                LinkAttribute::Xdp(xdp) => link.xdp_prog_id = attached_prog_id(xdp),
                LinkAttribute::Stats64(s) => {
                    link.stats = LinkStats {
                        rx_packets: s.rx_packets,
                        tx_packets: s.tx_packets,
                        rx_bytes: s.rx_bytes,
                        tx_bytes: s.tx_bytes,
                        rx_errors: s.rx_errors,
                        tx_errors: s.tx_errors,
                        rx_dropped: s.rx_dropped,
                        tx_dropped: s.tx_dropped,
                    }
                }
                _ => {}
            }
        }
        (!link.name.is_empty()).then_some(link)
    }

    /// Whether a change from `before` is one people and the verdict care about.
    pub fn state_differs(&self, before: &Link) -> bool {
        self.admin_up != before.admin_up
            || self.carrier != before.carrier
            || self.oper != before.oper
            || self.carrier_changes != before.carrier_changes
            || self.mtu != before.mtu
            || self.mac != before.mac
            || self.name != before.name
    }
}

/// IFLA_XDP_PROG_ID is present when exactly one program is attached; with several modes at
/// once the kernel reports each mode's id instead.
fn attached_prog_id(xdp: &[LinkXdp]) -> Option<u32> {
    xdp.iter()
        .find_map(|attr| match attr {
            LinkXdp::ProgId(id)
            | LinkXdp::SkbProgId(id)
            | LinkXdp::DrvProgId(id)
            | LinkXdp::HwProgId(id) => Some(*id),
            _ => None,
        })
        .filter(|id| *id != 0)
}

pub fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}
