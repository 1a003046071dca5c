//! A neighbour table entry (ARP / NDP), decoded from an rtnetlink neighbour message: how the
//! kernel itself judges whether the gateway answers, without netwatch sending anything.

use std::{fmt, net::IpAddr, time::Duration};

use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

/// `NDA_CACHEINFO` times are in `clock_t` ticks of USER_HZ, which is 100 on Linux
/// (include/uapi/asm-generic/param.h; net/core/neighbour.c: jiffies_to_clock_t).
const TICK: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neighbour {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub state: NeighState,
    /// How long before this message the kernel last confirmed the neighbour reachable (an
    /// answer to its probe, or an acknowledgement of traffic sent through it).
    pub confirmed_ago: Option<Duration>,
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
    /// Whether the kernel has the neighbour's address and heard from it at some point since
    /// it last resolved it (as opposed to resolving, or having failed to).
    pub fn is_resolved(self) -> bool {
        !matches!(self, Self::Incomplete | Self::Failed | Self::Other)
    }

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
        let confirmed_ago = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                NeighbourAttribute::CacheInfo(info) => Some(TICK * info.confirmed),
                _ => None,
            });
        Some(Self {
            ifindex: message.header.ifindex,
            addr,
            state,
            confirmed_ago,
        })
    }
}
