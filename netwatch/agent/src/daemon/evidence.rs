//! Evidence on demand: asking the kernel to re-validate a neighbour on the local link (one
//! ARP request or IPv6 neighbour solicitation, sent by the kernel itself; nothing routed).
//!
//! Only two things make the agent ask (docs/verdict.md, "Evidence on demand"):
//! - a client waits (`wait-online`, a `wait` request) on a subject whose verdict is Unknown:
//!   the next hops that subject depends on, at most once a second each;
//! - the host's own TCP data has waited half of `rx_stall` for a reply on a link: that
//!   link's next hops (the default gateway, the configured endpoints', and those of
//!   destinations it retransmits to), at most once every few seconds each, and not when the
//!   kernel confirmed them since the wait began. The kernel would probe them itself, later.
//!
//! An idle host with nobody waiting sends nothing; `[agent] evidence_on_demand = false`
//! turns both off.

use std::{collections::HashMap, net::IpAddr};

use tracing::{debug, info, warn};

use super::tracker::Tracker;
use crate::{
    netlink::{NeighState, NetlinkWatcher, Revalidation},
    state::{Health, NetworkState, Subject},
};

const S: u64 = 1_000_000_000;
/// While a client waits: once a second per neighbour (the kernel's own probe of a neighbour
/// that answers takes milliseconds; of one that does not, about 3 s).
const WAITING_SPACING_NS: u64 = S;
/// While the host's traffic waits: once a second per neighbour, so that an answer comes
/// before the wait counts as trouble (`rx_stall`).
const SILENCE_SPACING_NS: u64 = S;

/// What asking needs: the agent's view, the socket to ask on, and the time.
#[derive(Clone, Copy)]
struct Kernel<'a> {
    tracker: &'a Tracker,
    watcher: &'a NetlinkWatcher,
    now_ns: u64,
}

pub struct Revalidator {
    enabled: bool,
    /// When each (ifindex, neighbour) was last asked about.
    asked: HashMap<(u32, IpAddr), u64>,
    /// How many times the kernel was asked, for the metrics.
    pub count: u64,
}

impl Revalidator {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            asked: HashMap::new(),
            count: 0,
        }
    }

    /// A client waits on `subject`: if it is still Unknown, re-validate what it depends on.
    pub async fn on_demand(
        &mut self,
        subject: &Subject,
        state: &NetworkState,
        tracker: &mut Tracker,
        watcher: &NetlinkWatcher,
        now_ns: u64,
    ) {
        let unknown = state
            .verdict(subject)
            .is_some_and(|v| v.health == Health::Unknown);
        if !self.enabled || !unknown {
            return;
        }
        let hops = match subject {
            Subject::Host => tracker
                .default_gateways()
                .into_iter()
                .filter(|(ifindex, _)| tracker.links.get(ifindex).is_some_and(|l| l.carrier))
                .collect(),
            Subject::Link(name) => match tracker.links.values().find(|l| &l.name == name) {
                Some(link) => {
                    let ifindex = link.ifindex;
                    tracker
                        .default_gateways()
                        .into_iter()
                        .filter(|(i, _)| *i == ifindex)
                        .collect()
                }
                None => Vec::new(),
            },
            Subject::Endpoint(name) => tracker
                .endpoint_next_hop(name, watcher)
                .await
                .into_iter()
                .collect(),
        };
        if hops.is_empty() {
            debug!(%subject, "a client waits on it, but it has no neighbour to re-validate");
        }
        let why = format!("a client waits on {subject}, which is unknown");
        let kernel = Kernel {
            tracker,
            watcher,
            now_ns,
        };
        for hop in hops {
            self.ask(hop, WAITING_SPACING_NS, &why, &kernel).await;
        }
    }

    /// TCP data waits for a reply on `links` (each with the time a confirmation must be
    /// newer than): re-validate their next hops that the kernel has not confirmed since.
    pub async fn on_silence(
        &mut self,
        links: &[(u32, u64)],
        tracker: &mut Tracker,
        watcher: &NetlinkWatcher,
        now_ns: u64,
    ) {
        if !self.enabled || links.is_empty() {
            return;
        }
        let mut hops: Vec<(u32, IpAddr)> = tracker.default_gateways();
        hops.extend(tracker.endpoint_next_hops(watcher).await);
        hops.extend(tracker.retransmitting_next_hops(watcher).await);
        hops.retain(|(ifindex, _)| links.iter().any(|(i, _)| i == ifindex));
        hops.sort();
        hops.dedup();
        let why = "TCP data sent through its link is unanswered";
        let kernel = Kernel {
            tracker,
            watcher,
            now_ns,
        };
        for (ifindex, addr) in hops {
            let needed_after = links
                .iter()
                .find(|(i, _)| *i == ifindex)
                .map_or(0, |(_, after)| *after);
            let confirmed = tracker
                .neighbour_confirmed_at(ifindex, addr)
                .is_some_and(|at| at > needed_after);
            if !confirmed {
                self.ask((ifindex, addr), SILENCE_SPACING_NS, why, &kernel)
                    .await;
            }
        }
    }

    /// Asks about `hop` (ifindex, neighbour) unless it was asked about within `spacing_ns`.
    async fn ask(&mut self, hop: (u32, IpAddr), spacing_ns: u64, why: &str, kernel: &Kernel<'_>) {
        let (ifindex, addr) = hop;
        let Kernel {
            tracker,
            watcher,
            now_ns,
        } = *kernel;
        let recent = self
            .asked
            .get(&(ifindex, addr))
            .is_some_and(|at| now_ns.saturating_sub(*at) < spacing_ns);
        if recent {
            return;
        }
        let state = tracker.neighbour_state(ifindex, addr);
        if matches!(
            state,
            Some(NeighState::Probe | NeighState::Incomplete | NeighState::Delay)
        ) {
            // The kernel is validating it already; asking again would restart its count.
            return;
        }
        self.asked.insert((ifindex, addr), now_ns);
        let how = Revalidation::for_state(state);
        let ifname = tracker
            .links
            .get(&ifindex)
            .map_or_else(|| ifindex.to_string(), |l| l.name.clone());
        match watcher.revalidate(ifindex, addr, how).await {
            Ok(()) => {
                self.count += 1;
                info!(neighbour = %addr, %ifname, how = how.as_str(), why, "asked the kernel to re-validate a neighbour on the local link");
            }
            Err(e) => {
                warn!(neighbour = %addr, %ifname, error = %e, "asking the kernel to re-validate a neighbour failed")
            }
        }
    }
}
