//! The agent's receive counters: at XDP it never displaces another tool's program; at tc
//! ingress (the default) it counts beside one; and it leaves nothing attached or loaded behind
//! when it stops, however it stops.

use std::time::Duration;

use netwatch_tests::agent::{field_u64, on_link, Agent};
use netwatch_tests::bpf_ids::{prog_exists, wait_prog_gone};
use netwatch_tests::foreign_xdp::ForeignXdp;
use netwatch_tests::require_privileges;
use netwatch_tests::topology::{links, rx_prog_id, tcx_ingress_prog_ids, xdp_prog_id, Pair};

/// Loading the eBPF programs takes a moment; this only bounds a wait that failed.
const STARTUP: Duration = Duration::from_secs(30);

#[test]
fn another_tools_xdp_program_is_kept() {
    require_privileges();
    let pair = Pair::new();
    let b = pair.b_index;
    let foreign = ForeignXdp::attach(&pair.b, b);

    let agent = Agent::start_with(&pair.b, &[], Some("[agent]\nrx_hook = \"xdp\"\n"));
    let left = agent.wait_for(
        "xdp left alone: another program is attached",
        on_link(b),
        STARTUP,
    );
    assert_eq!(
        field_u64(&left, "other_prog_id"),
        u64::from(foreign.prog_id),
        "the agent names another program than the one attached: {left}"
    );
    agent.wait_for("agent ready", |_| true, STARTUP);

    assert_eq!(
        pair.b.block_on(xdp_prog_id(b)),
        Some(foreign.prog_id),
        "the foreign XDP program is no longer attached to {}",
        pair.b_if
    );
    let on_b = on_link(b);
    let attached: Vec<_> = agent
        .lines_so_far()
        .into_iter()
        .filter(|l| l["message"] == "receive counter attached" && on_b(l))
        .collect();
    assert!(
        attached.is_empty(),
        "the agent claims to have attached XDP to {}: {attached:?}",
        pair.b_if
    );
}

#[test]
fn at_tc_ingress_the_link_is_counted_beside_another_tools_xdp_program() {
    require_privileges();
    let pair = Pair::new();
    let b = pair.b_index;
    let foreign = ForeignXdp::attach(&pair.b, b);

    let agent = Agent::start(&pair.b);
    let attached = agent.wait_for("receive counter attached", on_link(b), STARTUP);
    assert_eq!(
        attached["hook"], "tc",
        "the default hook is not tc: {attached}"
    );
    assert_eq!(
        pair.b.block_on(xdp_prog_id(b)),
        Some(foreign.prog_id),
        "the foreign XDP program is no longer attached to {}",
        pair.b_if
    );
    let at_ingress = pair.b.block_on(tcx_ingress_prog_ids(b));
    assert_eq!(
        at_ingress.first().map(|&id| u64::from(id)),
        Some(field_u64(&attached, "prog_id")),
        "the agent logged {attached}, the kernel has {at_ingress:?} at tc ingress of {}",
        pair.b_if
    );
}

#[test]
fn nothing_stays_attached_after_sigterm() {
    nothing_stays_attached_after(Stop::Term);
}

#[test]
fn nothing_stays_attached_after_sigkill() {
    nothing_stays_attached_after(Stop::Kill);
}

enum Stop {
    Term,
    Kill,
}

fn nothing_stays_attached_after(stop: Stop) {
    require_privileges();
    let pair = Pair::new();
    let mut agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);

    let tracepoints = agent.wait_for("tracepoints attached", |_| true, STARTUP);
    let mut ids: Vec<u64> = ["retransmit_prog_id", "reset_prog_id", "sock_state_prog_id"]
        .iter()
        .map(|field| field_u64(&tracepoints, field))
        .collect();
    agent.wait_for("receive counter attached", on_link(pair.b_index), STARTUP);
    for line in agent.lines_so_far() {
        if line["message"] == "receive counter attached" {
            ids.push(field_u64(&line, "prog_id"));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for &id in &ids {
        assert!(
            prog_exists(id as u32),
            "program {id} the agent logged does not exist while it runs"
        );
    }

    match stop {
        Stop::Term => {
            let status = agent.terminate();
            agent.wait_for("agent stopped", |_| true, Duration::ZERO);
            assert!(
                status.success(),
                "a SIGTERM is a normal stop, yet the agent exited with {status}; last lines:\n{}",
                agent.tail()
            );
        }
        Stop::Kill => {
            agent.kill();
        }
    }

    let still_attached: Vec<_> = pair.b.block_on(async {
        let mut attached = Vec::new();
        for (index, name) in links().await {
            if let Some(id) = rx_prog_id(index).await {
                attached.push(format!("{name} (index {index}): program {id}"));
            }
        }
        attached
    });
    assert!(
        still_attached.is_empty(),
        "receive counters still attached in B after the agent stopped: {still_attached:?}"
    );
    let alive: Vec<_> = ids
        .iter()
        .filter(|&&id| !wait_prog_gone(id as u32, Duration::from_secs(5)))
        .collect();
    assert!(
        alive.is_empty(),
        "programs still loaded after the agent stopped: {alive:?} (of {ids:?})"
    );
}
