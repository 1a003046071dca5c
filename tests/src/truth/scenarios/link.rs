//! A link's own evidence: carrier lost and back under a flow (no false Degraded after),
//! and an interface another tool's XDP program holds (its kernel counters are the evidence,
//! and a first reading is none).

use std::net::IpAddr;
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

use super::{settle_all, watch, LIMIT, LINK_FAULT, RECOVERY, SETTLE};
use crate::foreign_xdp::ForeignXdp;
use crate::topology::{set_link_up, Pair, PairOptions};
use crate::traffic::Pace;
use crate::truth::{Expect, Outcome, Phase};

/// A flow runs; the peer goes down for 3 s and comes back. Down at once, Up at once after,
/// and no Degraded on the retransmits the outage left behind.
pub fn carrier_recovery() -> Vec<Outcome> {
    const SCENARIO: &str = "carrier loss and back";
    let pair = Pair::new();
    pair.default_route_via_a();
    let _a = IpAddr::V4(pair.a_v4);
    let (_agent, sub) = watch(&pair.b, "[agent]\nrx_hook = \"xdp\"\n");
    // A bulk flow: a full window in flight when the carrier goes, to be resent after.
    let _flow = pair.flow_to_a(
        5451,
        Pace {
            chunk: 256 * 1024,
            every: Duration::from_millis(2),
            max_bytes: u64::MAX,
            max_time: Duration::from_secs(60),
        },
    );
    let link = Subject::Link(pair.b_if.clone());
    settle_all(
        &sub,
        "link and host up",
        &[link.clone(), Subject::Host],
        Health::Up,
    );

    let phase = Phase::begin(SCENARIO, "carrier lost", &sub);
    pair.a.block_on(set_link_up(pair.a_index, false));
    let mut outcomes = phase.end(
        &[
            Expect::new(link.clone(), Health::Down, LINK_FAULT),
            Expect::new(Subject::Host, Health::Down, LINK_FAULT),
        ],
        LIMIT,
        Duration::from_secs(3),
    );
    let phase = Phase::begin(SCENARIO, "carrier back", &sub);
    pair.a.block_on(set_link_up(pair.a_index, true));
    outcomes.extend(phase.end(
        &[
            Expect::new(link, Health::Up, RECOVERY),
            Expect::new(Subject::Host, Health::Up, RECOVERY),
        ],
        LIMIT,
        Duration::from_secs(10),
    ));
    outcomes
}

/// Another tool's XDP program holds B's link, and the agent counts at XDP, so B's link has no
/// receive counter. Without traffic the link is Unknown (a first reading of the kernel's
/// counters proves nothing); with traffic it is Up, saying the kernel's counters are the
/// evidence.
pub fn xdp_less_interface() -> Vec<Outcome> {
    const SCENARIO: &str = "interface without XDP";
    let pair = Pair::with(PairOptions {
        ipv6: false,
        ..PairOptions::default()
    });
    let _foreign = ForeignXdp::attach(&pair.b, pair.b_index);
    let (_agent, sub) = watch(&pair.b, "[agent]\nrx_hook = \"xdp\"\n");
    let link = Subject::Link(pair.b_if.clone());

    let phase = Phase::begin(SCENARIO, "no traffic", &sub);
    let mut outcomes = phase.end(
        &[Expect::new(link.clone(), Health::Unknown, RECOVERY)],
        Duration::from_secs(2),
        Duration::from_secs(3),
    );
    let phase = Phase::begin(SCENARIO, "traffic", &sub);
    let _ping = pair.ping_a_from_b("0.1", 100, Duration::from_secs(20));
    outcomes.extend(phase.end(
        &[Expect::new(
            link.clone(),
            Health::Up,
            Duration::from_secs(2),
        )],
        LIMIT,
        SETTLE,
    ));
    let reasons = sub.latest().reasons(&link);
    assert!(
        reasons.contains("no receive counter on this link"),
        "the link without a receive counter does not say where its evidence comes from: \
         {reasons}"
    );
    outcomes
}
