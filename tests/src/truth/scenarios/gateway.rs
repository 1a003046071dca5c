//! The gateway itself: gone while traffic flows (Down well before the kernel's own timers
//! would say so), and a quiet healthy host that a client waits on (Up at once).

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use netwatch_client::state::{Health, Subject};

use super::{settle_all, watch, GATEWAY_GONE, LIMIT, RECOVERY, SETTLE};
use crate::agent::binary;
use crate::nft;
use crate::topology::{Pair, PairOptions};
use crate::traffic::Pace;
use crate::truth::{Expect, Outcome, Phase};

/// A, B's gateway, stops answering anything, ARP included: the host is Down once the
/// kernel, asked to re-validate it, finds it gone; Up again when it answers.
pub fn gateway_gone() -> Vec<Outcome> {
    const SCENARIO: &str = "gateway gone";
    let pair = Pair::new();
    pair.default_route_via_a();
    let _a = IpAddr::V4(pair.a_v4);
    let (_agent, sub) = watch(&pair.b, "");
    let _flow = pair.flow_to_a(
        5441,
        Pace {
            max_time: Duration::from_secs(60),
            ..Pace::default()
        },
    );
    let _ping = pair.ping_a_from_b("0.2", 300, Duration::from_secs(60));
    settle_all(&sub, "host up", &[Subject::Host], Health::Up);

    let phase = Phase::begin(SCENARIO, "gateway stops answering", &sub);
    nft::apply(
        &pair.a,
        "table arp nwt_gone {\n\
         \tchain in { type filter hook input priority 0; policy drop; }\n\
         \tchain out { type filter hook output priority 0; policy drop; }\n\
         }\n\
         table inet nwt_gone {\n\
         \tchain in { type filter hook input priority 0; policy drop; }\n\
         \tchain out { type filter hook output priority 0; policy drop; }\n\
         }\n",
    );
    let mut outcomes = phase.end(
        &[Expect::new(Subject::Host, Health::Down, GATEWAY_GONE)],
        Duration::from_secs(20),
        SETTLE,
    );
    let phase = Phase::begin(SCENARIO, "gateway back", &sub);
    nft::delete_table(&pair.a, "arp", "nwt_gone");
    nft::delete_table(&pair.a, "inet", "nwt_gone");
    outcomes.extend(phase.end(
        &[Expect::new(Subject::Host, Health::Up, RECOVERY)],
        LIMIT,
        SETTLE,
    ));
    outcomes
}

/// A healthy host with no traffic at all is Unknown; `netwatch wait-online` makes the
/// agent ask the kernel to re-validate the gateway, which answers: Up, and wait-online
/// exits 0, within a second.
pub fn idle_host() -> Vec<Outcome> {
    const SCENARIO: &str = "idle host";
    let pair = Pair::with(PairOptions {
        ipv6: false,
        ..PairOptions::default()
    });
    pair.default_route_via_a();
    let (agent, sub) = watch(&pair.b, "");
    settle_all(&sub, "host unknown", &[Subject::Host], Health::Unknown);

    let phase = Phase::begin(SCENARIO, "a client waits", &sub);
    let started = Instant::now();
    let output = Command::new(binary())
        .args(["wait-online", "--timeout", "30", "--socket"])
        .arg(agent.socket())
        .output()
        .expect("run netwatch wait-online");
    let took = started.elapsed();
    eprintln!(
        "idle host: wait-online exited {} after {:.3}s: {}",
        output.status,
        took.as_secs_f64(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "wait-online on an idle healthy host; agent log:\n{}",
        agent.tail()
    );
    let asked = agent.wait_for(
        "asked the kernel to re-validate a neighbour on the local link",
        |_| true,
        Duration::from_secs(5),
    );
    eprintln!("idle host: the agent logged {asked}");
    phase.end(
        &[Expect::new(Subject::Host, Health::Up, RECOVERY)],
        LIMIT,
        Duration::ZERO,
    )
}
