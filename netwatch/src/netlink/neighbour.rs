//! A neighbour table entry (ARP / NDP), decoded from an rtnetlink neighbour message: how the
//! kernel itself judges whether the gateway answers, without netwatch sending anything.

use std::{fmt, net::IpAddr};

use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neighbour {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub state: NeighState,
}

/// NUD states (include/uapi/linux/neighbour.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    NoArp,
    Permanent,
    Other,
}

impl NeighState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "INCOMPLETE",
            Self::Reachable => "REACHABLE",
            Self::Stale => "STALE",
            Self::Delay => "DELAY",
            Self::Probe => "PROBE",
            Self::Failed => "FAILED",
            Self::NoArp => "NOARP",
            Self::Permanent => "PERMANENT",
            Self::Other => "OTHER",
        }
    }
}

impl fmt::Display for NeighState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Neighbour {
    pub fn from_message(message: &NeighbourMessage) -> Option<Self> {
        let addr = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    Some(IpAddr::V6(*v6))
                }
                _ => None,
            })?;
        let state = match message.header.state {
            NeighbourState::Incomplete => NeighState::Incomplete,
            NeighbourState::Reachable => NeighState::Reachable,
            NeighbourState::Stale => NeighState::Stale,
            NeighbourState::Delay => NeighState::Delay,
            NeighbourState::Probe => NeighState::Probe,
            NeighbourState::Failed => NeighState::Failed,
            NeighbourState::Noarp => NeighState::NoArp,
            NeighbourState::Permanent => NeighState::Permanent,
            _ => NeighState::Other,
        };
        Some(Self {
            ifindex: message.header.ifindex,
            addr,
            state,
        })
    }
}
