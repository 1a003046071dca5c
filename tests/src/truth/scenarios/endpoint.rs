//! Faults of one endpoint, its link healthy: a port that refuses, and a one-way blackhole.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

use super::{endpoint_config, settle_all, watch, LIMIT, PATH_FAULT, RECOVERY, SETTLE};
use crate::connects::{Acceptor, ConnectLoop};
use crate::nft;
use crate::topology::Pair;
use crate::traffic::{Pace, PacedFlow};
use crate::truth::{Expect, Outcome, Phase};

/// A client connects every 200 ms; the service closes its port, so every connect gets a
/// RST: Down within one connect attempt or so, Up at the next connect once it is back.
pub fn refused_port() -> Vec<Outcome> {
    const SCENARIO: &str = "refused port";
    let pair = Pair::new();
    let port = 5411;
    let target = SocketAddr::new(IpAddr::V4(pair.a_v4), port);
    let (_agent, sub) = watch(&pair.b, &endpoint_config("service", target.ip(), port));
    let acceptor = Acceptor::start(&pair.a, target, Duration::from_secs(60));
    let _client = ConnectLoop::start(
        &pair.b,
        target,
        Duration::from_millis(200),
        Duration::from_secs(60),
    );
    let endpoint = Subject::Endpoint("service".into());
    settle_all(
        &sub,
        "endpoint up",
        std::slice::from_ref(&endpoint),
        Health::Up,
    );

    let phase = Phase::begin(SCENARIO, "port closed", &sub);
    acceptor.close();
    let mut outcomes = phase.end(
        &[Expect::new(endpoint.clone(), Health::Down, PATH_FAULT)],
        LIMIT,
        SETTLE,
    );
    let phase = Phase::begin(SCENARIO, "port open again", &sub);
    let _acceptor = Acceptor::start(&pair.a, target, Duration::from_secs(60));
    outcomes.extend(phase.end(
        &[Expect::new(endpoint, Health::Up, RECOVERY)],
        LIMIT,
        SETTLE,
    ));
    outcomes
}

/// A flow to an endpoint on B's own link; everything between them is dropped, ARP aside
/// (the host answers ARP, its service does not get through). The endpoint is Down; the
/// link is Up: the kernel, asked, confirms the neighbour answers.
pub fn blackhole() -> Vec<Outcome> {
    const SCENARIO: &str = "blackhole";
    let pair = Pair::new();
    let a = IpAddr::V4(pair.a_v4);
    let port = 5461;
    let (agent, sub) = watch(&pair.b, &endpoint_config("peer", a, port));
    let flow = pair.flow_to_a(
        port,
        Pace {
            max_time: Duration::from_secs(60),
            ..Pace::default()
        },
    );
    let endpoint = Subject::Endpoint("peer".into());
    let link = Subject::Link(pair.b_if.clone());
    settle_all(
        &sub,
        "endpoint and link up",
        &[endpoint.clone(), link.clone()],
        Health::Up,
    );

    let phase = Phase::begin(SCENARIO, "everything dropped", &sub);
    nft::apply(
        &pair.a,
        &format!(
            "table ip nwt_blackhole {{\n\
             \tchain in {{ type filter hook input priority 0; policy accept; ip saddr {} drop; }}\n\
             \tchain out {{ type filter hook output priority 0; policy accept; ip daddr {} drop; }}\n\
             }}\n",
            pair.b_v4, pair.b_v4
        ),
    );
    let mut outcomes = phase.end(
        &[
            Expect::new(endpoint.clone(), Health::Down, PATH_FAULT),
            Expect::new(link.clone(), Health::Up, PATH_FAULT),
        ],
        LIMIT,
        Duration::from_secs(8),
    );
    for asked in agent
        .lines_so_far()
        .iter()
        .filter(|l| l["message"] == "asked the kernel to re-validate a neighbour on the local link")
    {
        eprintln!("blackhole: {asked}");
    }
    let phase = Phase::begin(SCENARIO, "path back", &sub);
    let began = phase.began;
    nft::delete_table(&pair.a, "ip", "nwt_blackhole");
    let back = phase.end(
        &[
            Expect::new(endpoint, Health::Up, RECOVERY),
            Expect::new(link, Health::Up, RECOVERY),
        ],
        LIMIT,
        SETTLE,
    );
    outcomes.extend(from_first_packet_through(back, &flow, began, &[0]));
    outcomes
}

/// The path is back, but only the stalled flow's next retransmission can show it (TCP's
/// backoff decides when): the endpoints' targets (`which`) run from when its data got
/// through again.
fn from_first_packet_through(
    outcomes: Vec<Outcome>,
    flow: &PacedFlow,
    began: std::time::Instant,
    which: &[usize],
) -> Vec<Outcome> {
    let through = flow
        .resumed_after(began)
        .map(|at| at.saturating_duration_since(began));
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            if which.contains(&i) {
                o.with_evidence_at(through)
            } else {
                o
            }
        })
        .collect()
}

/// Flows both ways; B's packets to the endpoint are dropped where they arrive, its packets
/// (its own retransmissions among them) still reach B. Down, without flip-flops; Up again
/// once the path is back.
pub fn one_way_blackhole(ipv6: bool) -> Vec<Outcome> {
    let scenario = if ipv6 {
        "one-way blackhole v6"
    } else {
        "one-way blackhole v4"
    };
    let pair = Pair::new();
    let (a, b, family) = if ipv6 {
        (IpAddr::V6(pair.a_v6), IpAddr::V6(pair.b_v6), "ip6")
    } else {
        (IpAddr::V4(pair.a_v4), IpAddr::V4(pair.b_v4), "ip")
    };
    let port = 5421;
    let (_agent, sub) = watch(&pair.b, &endpoint_config("peer", a, port));
    let pace = Pace {
        max_time: Duration::from_secs(60),
        ..Pace::default()
    };
    let to_a = PacedFlow::start(&pair.b, &pair.a, a, port, pace);
    let _to_b = PacedFlow::start(&pair.a, &pair.b, b, port + 1, pace);
    let endpoint = Subject::Endpoint("peer".into());
    settle_all(
        &sub,
        "endpoint up",
        std::slice::from_ref(&endpoint),
        Health::Up,
    );

    let phase = Phase::begin(scenario, "B's packets to it dropped", &sub);
    nft::apply(
        &pair.a,
        &format!(
            "table {family} nwt_oneway {{\n\
             \tchain in {{ type filter hook input priority 0; policy accept; \
             {family} saddr {b} drop; }}\n\
             }}\n"
        ),
    );
    let mut outcomes = phase.end(
        &[Expect::new(endpoint.clone(), Health::Down, PATH_FAULT)],
        LIMIT,
        Duration::from_secs(8),
    );
    let phase = Phase::begin(scenario, "path back", &sub);
    let began = phase.began;
    nft::delete_table(&pair.a, family, "nwt_oneway");
    let back = phase.end(
        &[Expect::new(endpoint, Health::Up, RECOVERY)],
        LIMIT,
        SETTLE,
    );
    outcomes.extend(from_first_packet_through(back, &to_a, began, &[0]));
    outcomes
}
