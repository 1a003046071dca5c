//! The neighbour table as the verdict reads it: each entry's state, whether resolving it is
//! failing, and when the kernel last confirmed it reachable.

use std::{collections::HashMap, net::IpAddr};

use crate::netlink::{NeighState, Neighbour};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub state: NeighState,
    /// Resolution failed and nothing has answered since: FAILED, or resolving again
    /// (INCOMPLETE) after a failure. The kernel flips a dead gateway between the two as
    /// traffic keeps asking; both mean it does not answer.
    pub failing: bool,
    /// CLOCK_MONOTONIC nanoseconds when the kernel last confirmed it reachable, for entries
    /// it confirms (not static ones, not while resolving: a new entry's confirmation time
    /// is made up).
    pub confirmed_at_ns: Option<u64>,
}

#[derive(Default)]
pub struct Neighbours {
    entries: HashMap<(u32, IpAddr), NeighbourEntry>,
}

impl Neighbours {
    /// Takes a full read as the truth, keeping what a read cannot show: a failure that a
    /// new resolution attempt has not yet overcome.
    pub fn load(&mut self, neighbours: &[Neighbour], now_ns: u64) {
        let before = std::mem::take(&mut self.entries);
        for n in neighbours {
            let was = before.get(&(n.ifindex, n.addr));
            self.entries
                .insert((n.ifindex, n.addr), entry(n, was, now_ns));
        }
    }

    pub fn update(&mut self, n: &Neighbour, now_ns: u64) {
        let was = self.entries.get(&(n.ifindex, n.addr)).copied();
        self.entries
            .insert((n.ifindex, n.addr), entry(n, was.as_ref(), now_ns));
    }

    pub fn remove(&mut self, n: &Neighbour) {
        self.entries.remove(&(n.ifindex, n.addr));
    }

    pub fn forget_link(&mut self, ifindex: u32) {
        self.entries.retain(|(i, _), _| *i != ifindex);
    }

    pub fn get(&self, ifindex: u32, addr: IpAddr) -> Option<&NeighbourEntry> {
        self.entries.get(&(ifindex, addr))
    }

    /// The neighbour on `ifindex` confirmed most recently, and when.
    pub fn latest_confirmed(&self, ifindex: u32) -> Option<(IpAddr, u64)> {
        self.entries
            .iter()
            .filter(|((i, _), _)| *i == ifindex)
            .filter_map(|((_, addr), e)| Some((*addr, e.confirmed_at_ns?)))
            .max_by_key(|(_, at)| *at)
    }
}

fn entry(n: &Neighbour, was: Option<&NeighbourEntry>, now_ns: u64) -> NeighbourEntry {
    let failing = match n.state {
        NeighState::Failed => true,
        NeighState::Incomplete => was.is_some_and(|w| w.failing),
        _ => false,
    };
    let confirmable = matches!(
        n.state,
        NeighState::Reachable | NeighState::Stale | NeighState::Delay | NeighState::Probe
    );
    let confirmed_at_ns = n
        .confirmed_ago
        .filter(|_| confirmable)
        .map(|ago| now_ns.saturating_sub(u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX)));
    NeighbourEntry {
        state: n.state,
        failing,
        confirmed_at_ns,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn gateway(state: NeighState, confirmed_ago: u64) -> Neighbour {
        Neighbour {
            ifindex: 2,
            addr: "198.18.0.1".parse().unwrap(),
            state,
            confirmed_ago: Some(Duration::from_secs(confirmed_ago)),
        }
    }

    #[test]
    fn a_gateway_resolving_again_after_failing_is_still_failing() {
        let mut table = Neighbours::default();
        let addr = "198.18.0.1".parse().unwrap();
        table.update(&gateway(NeighState::Incomplete, 0), 10 * S);
        assert!(
            !table.get(2, addr).unwrap().failing,
            "a first resolution is not a failure"
        );
        table.update(&gateway(NeighState::Failed, 0), 11 * S);
        table.update(&gateway(NeighState::Incomplete, 0), 12 * S);
        assert!(table.get(2, addr).unwrap().failing);
        table.load(&[gateway(NeighState::Incomplete, 0)], 13 * S);
        assert!(
            table.get(2, addr).unwrap().failing,
            "a re-read keeps the failure"
        );
        table.update(&gateway(NeighState::Reachable, 0), 14 * S);
        assert!(!table.get(2, addr).unwrap().failing);
    }

    #[test]
    fn confirmation_times_count_only_for_entries_the_kernel_confirms() {
        let mut table = Neighbours::default();
        let addr = "198.18.0.1".parse().unwrap();
        table.update(&gateway(NeighState::Reachable, 2), 10 * S);
        assert_eq!(table.get(2, addr).unwrap().confirmed_at_ns, Some(8 * S));
        table.update(&gateway(NeighState::Incomplete, 1), 20 * S);
        assert_eq!(table.get(2, addr).unwrap().confirmed_at_ns, None);
    }
}
