//! Asks the kernel to re-validate one neighbour now: the kernel then sends its own ARP
//! request or IPv6 neighbour solicitation on the local link (nothing is routed), and the
//! entry becomes REACHABLE when the neighbour answers, FAILED when it does not
//! (ucast_solicit probes, retrans_time apart: about 3 s with the defaults).

use std::net::IpAddr;

use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};

use super::{request, NeighState, NetlinkError, NetlinkWatcher};

/// How the kernel was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revalidation {
    /// The entry had an address: set to PROBE, the kernel sends a unicast probe at once
    /// (IPv4; IPv6 waits for its retransmit timer, about 1 s).
    Probe,
    /// No entry, or one that failed or is still resolving: `NTF_USE`, which makes the kernel
    /// resolve it anew (a broadcast ARP request or a multicast solicitation).
    Resolve,
}

impl Revalidation {
    /// What to ask for an entry in `state` (`None`: the kernel has none).
    pub fn for_state(state: Option<NeighState>) -> Self {
        match state {
            // NTF_USE would move a STALE entry only to DELAY, which probes 5 s later.
            Some(s) if s.is_resolved() => Self::Probe,
            _ => Self::Resolve,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "unicast probe",
            Self::Resolve => "resolution",
        }
    }
}

impl NetlinkWatcher {
    /// Asks the kernel to re-validate `addr` on `ifindex` (see [`Revalidation`]).
    pub async fn revalidate(
        &self,
        ifindex: u32,
        addr: IpAddr,
        how: Revalidation,
    ) -> Result<(), NetlinkError> {
        let ask = self.requests.neighbours().add(ifindex, addr).replace();
        let ask = match how {
            Revalidation::Probe => ask.state(NeighbourState::Probe),
            Revalidation::Resolve => ask.state(NeighbourState::None).flags(NeighbourFlags::Use),
        };
        ask.execute()
            .await
            .map_err(request("re-validate a neighbour"))
    }
}
