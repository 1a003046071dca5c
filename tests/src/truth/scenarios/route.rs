//! Faults the kernel answers by changing routes without a word to netlink listeners: a link
//! bounced (its routes flushed), and carrier loss on one of two uplinks (its routes marked
//! linkdown, traffic moved to the other).

use std::net::IpAddr;
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

use super::{endpoint_config, settle_all, watch, LIMIT, LINK_FAULT, PATH_FAULT, RECOVERY, SETTLE};
use crate::dual::{Dual, A_P1};
use crate::topology::{set_link_up, Pair};
use crate::traffic::{Pace, PacedFlow};
use crate::truth::oracle::{agent_default_route_links, default_route_links, route_dev};
use crate::truth::{Expect, Outcome, Phase};

const SCENARIO_BOUNCE: &str = "link bounce";
const SCENARIO_FAILOVER: &str = "failover";

/// B's link set down and up again: the kernel deletes its IPv4 routes, the default route
/// with them, and says nothing. The host has no default route: Down, until one is added.
pub fn link_bounce() -> Vec<Outcome> {
    let pair = Pair::new();
    pair.default_route_via_a();
    let (agent, sub) = watch(&pair.b, "");
    let _ping = pair.ping_a_from_b("0.1", 600, Duration::from_secs(60));
    let link = Subject::Link(pair.b_if.clone());
    settle_all(
        &sub,
        "host and link up",
        &[Subject::Host, link.clone()],
        Health::Up,
    );

    let phase = Phase::begin(SCENARIO_BOUNCE, "link down and up", &sub);
    pair.b.block_on(async {
        set_link_up(pair.b_index, false).await;
        set_link_up(pair.b_index, true).await;
    });
    // The link itself was down for a moment, and is back: only the host is judged here.
    let mut outcomes = phase.end(
        &[Expect::new(Subject::Host, Health::Down, LINK_FAULT)],
        LIMIT,
        SETTLE,
    );
    let link_now = sub.latest().health(&link);
    assert_eq!(
        link_now,
        Some(Health::Up),
        "the bounced link is not Up again"
    );
    let kernel = default_route_links(&pair.b);
    let agent_view = agent_default_route_links(&sub.latest().state);
    assert_eq!(
        agent_view,
        kernel,
        "after the bounce the agent's default routes are not the kernel's; log:\n{}",
        agent.tail()
    );

    let phase = Phase::begin(SCENARIO_BOUNCE, "default route back", &sub);
    pair.default_route_via_a();
    outcomes.extend(phase.end(
        &[Expect::new(Subject::Host, Health::Up, RECOVERY)],
        LIMIT,
        SETTLE,
    ));
    assert_eq!(
        agent_default_route_links(&sub.latest().state),
        default_route_links(&pair.b)
    );
    outcomes
}

/// Two uplinks, the primary loses its carrier: the kernel routes through the secondary
/// and traffic flows. The endpoint stays Up through it (never Down) and is seen through the
/// link the kernel now uses; the host is Degraded (one uplink down) until the primary is
/// back.
pub fn failover() -> Vec<Outcome> {
    let dual = Dual::new();
    let port = 5401;
    let server = IpAddr::V4(dual.server);
    let (_agent, sub) = watch(&dual.b, &endpoint_config("server", server, port));
    let _flow = PacedFlow::start(
        &dual.b,
        &dual.a,
        server,
        port,
        Pace {
            max_time: Duration::from_secs(90),
            ..Pace::default()
        },
    );
    let endpoint = Subject::Endpoint("server".into());
    settle_all(
        &sub,
        "host and endpoint up",
        &[Subject::Host, endpoint.clone()],
        Health::Up,
    );
    let via =
        |sub: &crate::verdicts::Subscription| sub.latest().state.endpoints["server"].via.clone();

    let phase = Phase::begin(SCENARIO_FAILOVER, "primary loses carrier", &sub);
    dual.a.block_on(set_link_up(A_P1, false));
    let mut outcomes = phase.end(
        &[
            Expect::new(Subject::Link(dual.l1.clone()), Health::Down, LINK_FAULT),
            Expect::new(Subject::Host, Health::Degraded, LINK_FAULT),
            Expect::new(endpoint.clone(), Health::Up, PATH_FAULT),
        ],
        LIMIT,
        SETTLE,
    );
    assert_eq!(
        via(&sub),
        route_dev(&dual.b, server),
        "the endpoint's link is not the one the kernel routes it through"
    );

    let phase = Phase::begin(SCENARIO_FAILOVER, "primary back", &sub);
    dual.a.block_on(set_link_up(A_P1, true));
    outcomes.extend(phase.end(
        &[
            Expect::new(Subject::Host, Health::Up, RECOVERY),
            Expect::new(endpoint, Health::Up, RECOVERY),
        ],
        LIMIT,
        SETTLE,
    ));
    assert_eq!(via(&sub), route_dev(&dual.b, server));
    outcomes
}
