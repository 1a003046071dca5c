//! Which interfaces the agent watches: container-like veths (200 pairs, created and
//! deleted, a container-churn stand-in) are left out by default, with no receive counter and no
//! place in the state or the metrics; a link the verdict rests on is watched whatever its
//! name.

use std::time::{Duration, Instant};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::agent::{field_str, Agent};
use netwatch_tests::metrics::scrape;
use netwatch_tests::netns::NetNs;
use netwatch_tests::require_privileges;
use netwatch_tests::topology::{add_veth, delete_link, rx_prog_id, set_link_up, Pair};
use netwatch_tests::verdicts::{health, Subscription};

const STARTUP: Duration = Duration::from_secs(30);
const PAIRS: u32 = 200;
const METRICS: &str = "127.0.0.1:9477";

#[test]
fn container_veths_are_left_out_by_default_and_the_rest_is_watched() {
    require_privileges();
    let pair = Pair::new();
    pair.default_route_via_a();
    // Loopback is down in a new namespace; the exporter listens on it.
    pair.b.block_on(set_link_up(1, true));
    let agent = Agent::start_with(&pair.b, &["--metrics", METRICS], None);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let _ping = pair.ping_a_from_b("0.1", 300, Duration::from_secs(40));

    let index = |i: u32| (2000 + 2 * i, 2001 + 2 * i);
    pair.b.block_on(async {
        for i in 0..PAIRS {
            let (a, b) = index(i);
            add_veth(&format!("veth{i}a"), a, &format!("veth{i}b"), b).await;
            set_link_up(a, true).await;
            set_link_up(b, true).await;
        }
    });
    // A watched link made after them: once the state lists it, the agent has seen them all.
    seen_after(&agent, &pair.b, "nwlast0");
    let counted: Vec<u32> = pair.b.block_on(async {
        let mut counted = Vec::new();
        for i in 0..PAIRS {
            let (a, b) = index(i);
            for link in [a, b] {
                if rx_prog_id(link).await.is_some() {
                    counted.push(link);
                }
            }
        }
        counted
    });
    assert!(
        counted.is_empty(),
        "a receive counter attached to container veths (ifindexes {counted:?})"
    );
    let state = agent.get().expect("the agent's state");
    let listed: Vec<&String> = state
        .links
        .keys()
        .filter(|n| n.starts_with("veth"))
        .collect();
    assert!(
        listed.is_empty(),
        "the state lists container veths: {listed:?}"
    );
    assert!(
        state.links.contains_key(&pair.b_if),
        "the state lacks the watched link {}: {:?}",
        pair.b_if,
        state.links.keys()
    );
    let metrics = scrape(&pair.b, METRICS.parse().unwrap()).expect("the agent's metrics");
    let veth_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("interface=\"veth"))
        .collect();
    assert!(
        veth_lines.is_empty(),
        "the metrics list container veths: {veth_lines:?}"
    );
    assert!(
        metrics.contains(&format!("interface=\"{}\"", pair.b_if)),
        "the metrics lack the watched link"
    );

    pair.b.block_on(async {
        for i in 0..PAIRS {
            delete_link(index(i).0).await;
        }
    });
    // A watched link removed after them: its "link removed" line comes after theirs would.
    pair.b.exec_ok("ip", &["link", "del", "nwlast0"]);
    agent.wait_for(
        "link removed",
        |l| l["ifname"] == "nwlast0",
        Duration::from_secs(10),
    );
    let announced: Vec<String> = agent
        .lines_so_far()
        .iter()
        .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("veth")))
        .map(|l| format!("{} {}", l["message"], field_str(l, "ifname")))
        .collect();
    assert!(
        announced.is_empty(),
        "the agent's info log announced container veths: {:?}",
        &announced[..announced.len().min(5)]
    );
    let sub = Subscription::connect(agent.socket());
    sub.wait_for(
        "the host Up after the churn",
        |s| health(s, &Subject::Host) == Some(Health::Up),
        Duration::from_secs(10),
    );
}

#[test]
fn a_link_with_the_default_route_is_watched_whatever_its_name() {
    require_privileges();
    let pair = Pair::new();
    let excluded = format!("{}*", &pair.b_if[..3]);
    let agent = Agent::start_with(&pair.b, &["--exclude-interfaces", &excluded], None);
    agent.wait_for("agent ready", |_| true, STARTUP);
    seen_after(&agent, &pair.b, "nwlast0");
    let state = agent.get().expect("the agent's state");
    assert!(
        !state.links.contains_key(&pair.b_if),
        "{} is excluded by `{excluded}` and carries no default route, yet listed",
        pair.b_if
    );
    assert_eq!(pair.b.block_on(rx_prog_id(pair.b_index)), None);

    pair.default_route_via_a();
    let _ping = pair.ping_a_from_b("0.1", 300, Duration::from_secs(30));
    let sub = Subscription::connect(agent.socket());
    let link = Subject::Link(pair.b_if.clone());
    sub.wait_for(
        "the default-route link watched and Up, and the host Up",
        |s| health(s, &link) == Some(Health::Up) && health(s, &Subject::Host) == Some(Health::Up),
        Duration::from_secs(10),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.b.block_on(rx_prog_id(pair.b_index)).is_none() {
        assert!(
            Instant::now() < deadline,
            "no receive counter on the default-route link {} though its name is excluded",
            pair.b_if
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Adds a link `name` in `ns` (a bridge, as this kernel has no dummy devices; a name no
/// pattern leaves out) and waits until the agent's state lists it: everything made before
/// it has been seen by then.
fn seen_after(agent: &Agent, ns: &NetNs, name: &str) {
    ns.exec_ok("ip", &["link", "add", name, "type", "bridge"]);
    ns.exec_ok("ip", &["link", "set", name, "up"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.get().is_ok_and(|s| s.links.contains_key(name)) {
        assert!(Instant::now() < deadline, "the agent never listed {name}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
