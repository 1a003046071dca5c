//! The truth suite as tests: each fault scenario must end with the right verdict, never Down
//! by mistake, and without flip-flops once right (tests/src/truth). How fast each got there
//! is the bench's business (`cargo xtask bench --scenario truth`); here it is printed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::agent::{binary, default_socket, Agent};
use netwatch_tests::require_privileges;
use netwatch_tests::topology::Pair;
use netwatch_tests::truth::{assert_right, scenarios};
use netwatch_tests::verdicts::{is, Subscription};

#[test]
fn a_bounced_link_leaves_the_host_without_a_default_route_down() {
    require_privileges();
    assert_right(&scenarios::link_bounce());
}

#[test]
fn failover_to_a_second_uplink_keeps_the_endpoint_up_through_the_link_the_kernel_uses() {
    require_privileges();
    assert_right(&scenarios::failover());
}

#[test]
fn a_refused_port_is_down_and_up_again_when_it_opens() {
    require_privileges();
    let outcomes = scenarios::refused_port();
    assert_right(&outcomes);
    // Loosely: well before a 10 s evidence window could have run out on earlier successes.
    let down = &outcomes[0];
    assert!(
        down.to_right.is_some_and(|t| t < Duration::from_secs(5)),
        "the refused port was not Down within 5 s: {}",
        down.describe()
    );
}

#[test]
fn one_percent_loss_is_up_and_five_percent_is_degraded_while_it_lasts() {
    require_privileges();
    assert_right(&scenarios::random_loss(1));
    assert_right(&scenarios::random_loss(5));
}

#[test]
fn a_gateway_gone_is_down_before_the_kernels_own_timers_say_so() {
    require_privileges();
    assert_right(&scenarios::gateway_gone());
}

#[test]
fn a_blackholed_endpoint_is_down_while_its_link_whose_neighbour_answers_is_up() {
    require_privileges();
    assert_right(&scenarios::blackhole());
}

#[test]
fn a_one_way_blackhole_is_down_without_flip_flops_on_ipv4_and_ipv6() {
    require_privileges();
    assert_right(&scenarios::one_way_blackhole(false));
    assert_right(&scenarios::one_way_blackhole(true));
}

#[test]
fn a_link_back_after_carrier_loss_is_up_not_degraded_by_the_outage() {
    require_privileges();
    assert_right(&scenarios::carrier_recovery());
}

#[test]
fn an_idle_healthy_host_is_up_as_soon_as_a_client_waits() {
    require_privileges();
    assert_right(&scenarios::idle_host());
}

#[test]
fn an_interface_without_xdp_is_up_only_on_evidence_from_its_kernel_counters() {
    require_privileges();
    assert_right(&scenarios::xdp_less_interface());
}

#[test]
fn after_a_netlink_storm_the_agent_sees_what_the_kernel_has_and_holds_no_stale_links() {
    require_privileges();
    let report = scenarios::netlink_storm(300);
    eprintln!(
        "storm of {} pairs: {} overruns logged; converged {}; fds {} before, {} after",
        report.pairs,
        report.overruns,
        report
            .converged_after
            .map_or("never".to_string(), |t| format!(
                "{:.2}s after",
                t.as_secs_f64()
            )),
        report.fds_before,
        report.fds_after
    );
    assert!(
        report.overruns > 0,
        "the storm did not overrun the 4 KiB event buffer: it tested nothing"
    );
    assert_eq!(
        report.agent_links, report.kernel_links,
        "the agent's links are not the kernel's after the storm"
    );
    assert!(report.converged_after.is_some());
    assert!(
        report.fds_after <= report.fds_before + 2,
        "the agent holds {} fds after the storm, {} before: links of deleted interfaces leak",
        report.fds_after,
        report.fds_before
    );
}

#[test]
fn the_agent_starts_and_judges_while_an_endpoint_name_does_not_resolve() {
    require_privileges();
    let pair = Pair::new();
    // RFC 2606: .invalid never resolves.
    let config = "[[endpoint]]\nname = \"nowhere\"\naddress = \"netwatch-test.invalid:443\"\n";
    let agent = Agent::start_with(&pair.b, &[], Some(config));
    agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
    let sub = Subscription::connect(agent.socket());
    let endpoint = Subject::Endpoint("nowhere".into());
    sub.wait_for(
        "the unresolved endpoint unknown, saying why",
        |s| is(s, &endpoint, Health::Unknown, "netwatch-test.invalid:443"),
        Duration::from_secs(15),
    );
    // Everything else is judged meanwhile.
    let _ping = pair.ping_a_from_b("0.1", 50, Duration::from_secs(10));
    let link = Subject::Link(pair.b_if.clone());
    sub.wait_for(
        "the link up",
        |s| is(s, &link, Health::Up, ""),
        Duration::from_secs(10),
    );
}

#[test]
fn wait_online_started_before_the_agent_waits_for_its_socket() {
    require_privileges();
    let pair = Pair::new();
    pair.default_route_via_a();
    let socket: PathBuf = default_socket(&pair.b);
    let started = Instant::now();
    let mut waiting = Command::new(binary())
        .args(["wait-online", "--timeout", "30", "--socket"])
        .arg(&socket)
        .spawn()
        .expect("start netwatch wait-online");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        waiting.try_wait().expect("poll wait-online").is_none(),
        "wait-online gave up before the agent started"
    );
    let agent = Agent::start(&pair.b);
    let _ping = pair.ping_a_from_b("0.1", 200, Duration::from_secs(30));
    let status = loop {
        if let Some(status) = waiting.try_wait().expect("poll wait-online") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "wait-online did not return; agent log:\n{}",
            agent.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "wait-online returned {status} {:.2}s after it started (the agent 1 s later)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(0));
}
