//! The agent running in a namespace reports link state changes and follows links that come and
//! go.

use std::time::Duration;

use netwatch_tests::agent::{field_u64, is_problem, on_link, Agent};
use netwatch_tests::require_privileges;
use netwatch_tests::topology::{add_veth, delete_link, rx_prog_id, set_link_up, Pair};

/// Loading the eBPF programs takes a moment; this only bounds a wait that failed.
const STARTUP: Duration = Duration::from_secs(30);
/// Bounds the wait for one reported event.
const EVENT: Duration = Duration::from_secs(10);

#[test]
fn agent_reports_admin_down_carrier_loss_and_recovery() {
    require_privileges();
    let pair = Pair::new();
    let b = pair.b_index;
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let on_b = on_link(b);

    let mark = agent.mark();
    pair.b.block_on(set_link_up(b, false));
    agent.wait_for_after(
        mark,
        "link changed",
        |l| on_b(l) && l["admin"] == "down",
        EVENT,
    );

    let mark = agent.mark();
    pair.b.block_on(set_link_up(b, true));
    agent.wait_for_after(
        mark,
        "link changed",
        |l| on_b(l) && l["admin"] == "up",
        EVENT,
    );

    // Carrier loss on a veth: its peer goes down.
    let mark = agent.mark();
    pair.a.block_on(set_link_up(pair.a_index, false));
    let down = agent.wait_for_after(
        mark,
        "link changed",
        |l| on_b(l) && l["carrier"] == "down",
        EVENT,
    );
    assert_eq!(
        down["admin"], "up",
        "carrier loss is not admin down: {down}"
    );

    let mark = agent.mark();
    pair.a.block_on(set_link_up(pair.a_index, true));
    agent.wait_for_after(
        mark,
        "link changed",
        |l| on_b(l) && l["carrier"] == "up" && l["oper"] == "up",
        EVENT,
    );
}

#[test]
fn interface_created_after_start_gets_the_receive_counter_and_deleted_is_forgotten() {
    require_privileges();
    let pair = Pair::new();
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);

    // A second veth pair with both ends inside B, indexes distinct from everything there.
    let (c0, c1) = (30, 31);
    let mark = agent.mark();
    pair.b.block_on(async {
        add_veth("nwc0", c0, "nwc1", c1).await;
        set_link_up(c0, true).await;
        set_link_up(c1, true).await;
    });
    for index in [c0, c1] {
        let attached =
            agent.wait_for_after(mark, "receive counter attached", on_link(index), EVENT);
        let logged = field_u64(&attached, "prog_id");
        let on_link_now = pair.b.block_on(rx_prog_id(index));
        assert_eq!(
            on_link_now.map(u64::from),
            Some(logged),
            "the kernel shows program {on_link_now:?} receiving on index {index}, the agent \
             logged {attached}"
        );
    }

    let mark = agent.mark();
    pair.b.block_on(delete_link(c0));
    for index in [c0, c1] {
        agent.wait_for_after(mark, "link removed", on_link(index), EVENT);
    }
    // Give the agent a few report intervals (1 s) to trip over the removed links.
    std::thread::sleep(Duration::from_millis(2500));
    let problems: Vec<_> = agent.lines_so_far()[mark..]
        .iter()
        .filter(|line| is_problem(line))
        .map(|line| line.to_string())
        .collect();
    assert!(
        problems.is_empty(),
        "WARN/ERROR lines after deleting a link:\n{}",
        problems.join("\n")
    );
}
