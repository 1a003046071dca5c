//! Carrier loss that the kernel reports late (linkwatch batching, docs/kernel-notes.md)
//! reaches the agent's subscribers well before the kernel's own event would have.

use std::time::{Duration, Instant};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::agent::Agent;
use netwatch_tests::clock::{now_ns, ns};
use netwatch_tests::require_privileges;
use netwatch_tests::rtnl::Listener;
use netwatch_tests::topology::{set_link_up, Pair, PairOptions};
use netwatch_tests::verdicts::{health, Subscription};

const STARTUP: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;
/// Linkwatch sends at most about one batch a second: a quiet second before each round makes
/// the peer's "up" start a fresh batch period, so the "down" 0.3 s later falls inside it.
const QUIET: Duration = Duration::from_millis(1200);
const DOWN_AFTER_UP: Duration = Duration::from_millis(300);
/// A carrier-off event within this much of `ip link set down` was not delayed (undelayed
/// events take about 2 ms).
const NOT_DELAYED: Duration = Duration::from_millis(100);

#[test]
fn carrier_loss_with_shared_ifindex_is_down_well_before_the_delayed_event() {
    require_privileges();
    // Both ends index 40: linkwatch treats them as non-urgent and batches their events.
    let pair = Pair::with(PairOptions {
        shared_index: Some(40),
        ..PairOptions::default()
    });
    let (a, b) = (pair.a_index, pair.b_index);
    let flood = |pair: &Pair| {
        // 5 ms apart, at most 400 echoes or 5 s: B keeps receiving until A's end goes down.
        pair.ping_b_from_a("0.005", 400, Duration::from_secs(5))
    };
    // Start from A's end down. Its own event may itself be delayed and open a batch period
    // of its own, so the first round waits two quiet periods.
    pair.a.block_on(set_link_up(a, false));
    std::thread::sleep(QUIET);

    // Baseline, without the agent: when does the kernel's RTM_NEWLINK say carrier off?
    let mut baseline = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(QUIET);
        let listener = Listener::start(&pair.b, Duration::from_secs(10))
            .expect("a raw rtnetlink listener in B");
        let up_at = Instant::now();
        pair.a.block_on(set_link_up(a, true));
        let ping = flood(&pair);
        sleep_until(up_at + DOWN_AFTER_UP);
        let down_at = now_ns();
        pair.a.block_on(set_link_up(a, false));
        let event = listener.events.wait_first(
            down_at,
            Instant::now() + Duration::from_secs(5),
            |_, event| event.ifindex == b && !event.has_carrier(),
        );
        ping.stop();
        let (event_at, _) = event.unwrap_or_else(|| {
            panic!(
                "baseline round {round}: no RTM_NEWLINK with carrier off for index {b} within 5 s"
            )
        });
        baseline.push(ns(event_at - down_at));
    }

    // With the agent: when does the Down reach a subscriber?
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let sub = Subscription::connect(agent.socket());
    let link = Subject::Link(pair.b_if.clone());
    let mut with_agent = Vec::new();
    for _ in 0..ROUNDS {
        std::thread::sleep(QUIET);
        let up_at = Instant::now();
        pair.a.block_on(set_link_up(a, true));
        let ping = flood(&pair);
        sub.wait_for(
            "the link out of Down after the peer came up",
            |s| matches!(health(s, &link), Some(h) if h != Health::Down),
            Duration::from_secs(5),
        );
        sleep_until(up_at + DOWN_AFTER_UP);
        let mark = sub.mark();
        let down_at = Instant::now();
        pair.a.block_on(set_link_up(a, false));
        let down = sub.wait_since(
            mark,
            "link down after the peer went down",
            |s| health(s, &link) == Some(Health::Down),
            Duration::from_secs(5),
        );
        ping.stop();
        with_agent.push(down.at.saturating_duration_since(down_at));
    }

    let (base, agent_median) = (median(&baseline), median(&with_agent));
    eprintln!(
        "carrier off on a shared-ifindex veth, median of {ROUNDS}: kernel RTM_NEWLINK {} \
         (rounds {}), agent's Down on the socket {} (rounds {})",
        ms(base),
        list(&baseline),
        ms(agent_median),
        list(&with_agent)
    );
    assert!(
        base >= NOT_DELAYED,
        "the kernel did not delay the carrier-off event at all (median {}, rounds {}): this \
         kernel or machine does not batch linkwatch events the way this test needs, so it \
         shows nothing about the agent",
        ms(base),
        list(&baseline)
    );
    assert!(
        agent_median < base / 2,
        "the agent reported Down after {} (rounds {}), not well before the kernel's own event \
         at {} (rounds {})",
        ms(agent_median),
        list(&with_agent),
        ms(base),
        list(&baseline)
    );
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn list(values: &[Duration]) -> String {
    values.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
}
