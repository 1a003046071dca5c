//! The link and host verdicts under link faults, read through the agent's socket: admin down,
//! carrier loss, a gateway that stops answering ARP, fast flaps, and a link with no traffic.

use std::time::{Duration, Instant};

use netwatch_client::state::{Health, NetworkState, Subject};
use netwatch_tests::agent::Agent;
use netwatch_tests::topology::{carrier_changes, set_link_up, Pair, PairOptions};
use netwatch_tests::verdicts::{health, is, Subscription};
use netwatch_tests::{nft, require_privileges};

/// Loading the eBPF programs takes a moment; this only bounds a wait that failed.
const STARTUP: Duration = Duration::from_secs(30);
/// Bounds the wait for a verdict that should follow a fault or a recovery at once.
const VERDICT: Duration = Duration::from_secs(10);

#[test]
fn admin_down_carrier_loss_and_failed_gateway_are_down_and_recovery_is_up() {
    require_privileges();
    let pair = Pair::new();
    let b = pair.b_index;
    // Short neighbour timers on B, set before B has any IPv4 neighbour (an entry keeps the
    // reachable time it was given): a gateway that stops answering goes FAILED within about
    // 2 s of B's traffic instead of half a minute (REACHABLE 0.25-0.75 s, STALE, DELAY 1 s,
    // one unicast probe, 200 ms).
    for (key, value) in [
        ("delay_first_probe_time", "1"),
        ("ucast_solicit", "1"),
        ("mcast_solicit", "1"),
        ("retrans_time_ms", "200"),
        ("base_reachable_time_ms", "500"),
    ] {
        pair.b
            .sysctl(&format!("net.ipv4.neigh.{}.{key}", pair.b_if), value);
    }
    pair.default_route_via_a();
    // The faults below follow each other within milliseconds: four carrier changes in 10 s
    // would read as flapping (Degraded) instead of Up, which is another test's business.
    let agent = Agent::start_with(&pair.b, &[], Some("[thresholds]\nflap_changes = 50\n"));
    agent.wait_for("agent ready", |_| true, STARTUP);
    // Evidence for the whole test: B pings the gateway. 0.1 s apart, 60 s at most.
    let _ping = pair.ping_a_from_b("0.1", 600, Duration::from_secs(60));
    let sub = Subscription::connect(agent.socket());
    let link = Subject::Link(pair.b_if.clone());
    let up = |s: &NetworkState| {
        health(s, &Subject::Host) == Some(Health::Up) && health(s, &link) == Some(Health::Up)
    };
    let down_because = |reason: &'static str| {
        let link = link.clone();
        move |s: &NetworkState| {
            is(s, &link, Health::Down, reason) && health(s, &Subject::Host) == Some(Health::Down)
        }
    };
    sub.wait_for("host and link up with B's ping", up, VERDICT);

    // Admin down.
    let mark = sub.mark();
    pair.b.block_on(set_link_up(b, false));
    sub.wait_since(
        mark,
        "link down (administratively) and host down",
        down_because("administratively down"),
        VERDICT,
    );
    let mark = sub.mark();
    pair.b.block_on(set_link_up(b, true));
    // Taking a link down deletes its IPv4 routes (fib_disable_ip): put the default back.
    pair.default_route_via_a();
    sub.wait_since(mark, "up again after admin up", up, VERDICT);

    // Carrier loss: the peer goes down.
    let mark = sub.mark();
    pair.a.block_on(set_link_up(pair.a_index, false));
    sub.wait_since(
        mark,
        "link down (no carrier) and host down",
        down_because("no carrier"),
        VERDICT,
    );
    let mark = sub.mark();
    pair.a.block_on(set_link_up(pair.a_index, true));
    sub.wait_since(mark, "up again after the peer came back", up, VERDICT);

    // The gateway stops answering ARP (and asking: B would learn A's address from A's own
    // requests). B's ping keeps B resolving it.
    // A gateway that was resolved and stops answering, not one that never answered: the
    // carrier loss above flushed B's entry, so wait until B's ping has resolved it again.
    wait_for_neighbour(&pair, "REACHABLE");
    let mark = sub.mark();
    let silenced = Instant::now();
    nft::apply(
        &pair.a,
        "table arp nwt_noarp {\n\
         \tchain in { type filter hook input priority 0; policy drop; }\n\
         \tchain out { type filter hook output priority 0; policy drop; }\n\
         }\n",
    );
    let failed = sub.wait_since(
        mark,
        "link down (gateway neighbour FAILED) and host down",
        down_because("FAILED"),
        VERDICT,
    );
    eprintln!(
        "gateway neighbour FAILED reported {:.1}s after A stopped answering ARP: {}",
        failed.at.saturating_duration_since(silenced).as_secs_f64(),
        failed.reasons(&link)
    );
    let mark = sub.mark();
    nft::delete_table(&pair.a, "arp", "nwt_noarp");
    sub.wait_since(mark, "up again once A answers ARP", up, VERDICT);
}

#[test]
fn fast_flaps_are_degraded_flapping_though_most_never_arrive_as_events() {
    require_privileges();
    // Shared ifindexes: the kernel batches these carrier changes (linkwatch), so most flaps
    // are coalesced away before any RTM_NEWLINK is sent.
    let pair = Pair::with(PairOptions {
        shared_index: Some(40),
        ..PairOptions::default()
    });
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let sub = Subscription::connect(agent.socket());
    let link = Subject::Link(pair.b_if.clone());
    // Traffic A -> B throughout (it fails while A's end is down, and resumes).
    let _ping = pair.ping_b_from_a("0.02", 1000, Duration::from_secs(20));
    sub.wait_for(
        "link up with A's ping",
        |s| health(s, &link) == Some(Health::Up),
        VERDICT,
    );

    let before = pair.b.block_on(carrier_changes(pair.b_index));
    let log_mark = agent.mark();
    let mark = sub.mark();
    // Down and up every 200 ms for 3 s, ending up.
    pair.a.run(|| {
        netwatch_tests::netns::block_on_here(async {
            let start = tokio::time::Instant::now();
            for step in 1..=16u32 {
                set_link_up(pair.a_index, step % 2 == 0).await;
                tokio::time::sleep_until(start + Duration::from_millis(200) * step).await;
            }
        })
    });
    let flaps_done = Instant::now();
    let changes = pair.b.block_on(carrier_changes(pair.b_index)) - before;
    let flapping = sub.wait_since(
        mark,
        "link degraded (flapping)",
        |s| is(s, &link, Health::Degraded, "flapping"),
        VERDICT,
    );
    let events = agent.lines_so_far()[log_mark..]
        .iter()
        .filter(|l| {
            l["message"] == "link changed"
                && l["ifindex"].as_u64() == Some(u64::from(pair.b_index))
                && l["carrier"] == "down"
        })
        .count();
    eprintln!(
        "{changes} carrier changes on {} (kernel counter); the agent logged {events} carrier-down \
         changes; Degraded (flapping) {} the flaps ended: {}",
        pair.b_if,
        if flapping.at > flaps_done {
            "after"
        } else {
            "before"
        },
        flapping.reasons(&link)
    );
    assert!(
        changes >= 8,
        "the kernel counted only {changes} carrier changes on {}: the flaps did not happen",
        pair.b_if
    );
}

#[test]
fn a_link_without_traffic_is_unknown_unverified_never_up() {
    require_privileges();
    // No IPv6: nothing (ND, MLD, router solicitations) crosses the link by itself.
    let pair = Pair::with(PairOptions {
        ipv6: false,
        ..PairOptions::default()
    });
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let sub = Subscription::connect(agent.socket());
    let link = Subject::Link(pair.b_if.clone());
    sub.wait_for(
        "link unknown (unverified)",
        |s| is(s, &link, Health::Unknown, "unverified"),
        VERDICT,
    );
    std::thread::sleep(Duration::from_secs(3));
    let never_confident: Vec<_> = sub
        .since(0)
        .into_iter()
        .filter(|seen| seen.health(&link) != Some(Health::Unknown))
        .collect();
    assert!(
        never_confident.is_empty(),
        "the link without traffic was not Unknown throughout; states seen:\n{}",
        sub.describe()
    );
    let latest = sub.latest();
    assert!(
        is(&latest.state, &link, Health::Unknown, "unverified"),
        "after 3 s without traffic: {}; states seen:\n{}",
        latest.reasons(&link),
        sub.describe()
    );
}

/// Waits (at most 10 s: the machine may be busy) until B's neighbour entry for A's address is in `state`.
fn wait_for_neighbour(pair: &Pair, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = pair.a_v4.to_string();
    let args = [
        "-4",
        "neigh",
        "show",
        addr.as_str(),
        "dev",
        pair.b_if.as_str(),
    ];
    loop {
        let output = pair.b.exec_ok("ip", &args);
        let shown = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if shown.split_whitespace().last() == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "B's neighbour entry for {addr} is not {state} after 10 s: `{shown}`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
