//! What a scrape shows: the verdicts and counters of the current state, and the agent's costs.

use super::{
    text::{Exposition, Kind},
    AgentCosts,
};
use crate::state::{Health, LinkStatus, NetworkState, Verdict};

const HEALTHS: [Health; 4] = [Health::Unknown, Health::Up, Health::Degraded, Health::Down];

/// The Prometheus text for `state` and `costs`. Every family is written, with its HELP and
/// TYPE, even when it has no samples yet, so dashboards find every name from the first scrape.
pub fn render(state: &NetworkState, costs: &AgentCosts) -> String {
    let mut text = Exposition::default();
    links(&mut text, state);
    endpoints(&mut text, state);
    verdict(
        &mut text.family(
            "netwatch_host_verdict",
            Kind::Gauge,
            "1 for the host's current verdict (unknown, up, degraded, down), 0 for the others.",
        ),
        &[],
        &state.host,
    );
    agent(&mut text, costs);
    text.finish()
}

/// One sample per verdict, 1 for the current one, so `max by (verdict)` and alerts on
/// `{verdict="down"} == 1` need no knowledge of an encoding.
fn verdict(family: &mut super::text::Family<'_>, labels: &[(&str, &str)], verdict: &Verdict) {
    for health in HEALTHS {
        let mut with_verdict = labels.to_vec();
        with_verdict.push(("verdict", health.as_str()));
        family.sample(&with_verdict, verdict.health == health);
    }
}

fn links(text: &mut Exposition, state: &NetworkState) {
    type Counter = fn(&LinkStatus) -> u64;
    let counters: [(&str, &str, Counter); 9] = [
        (
            "netwatch_link_receive_packets_total",
            "Packets received by the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.rx_packets,
        ),
        (
            "netwatch_link_transmit_packets_total",
            "Packets transmitted by the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.tx_packets,
        ),
        (
            "netwatch_link_receive_bytes_total",
            "Bytes received by the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.rx_bytes,
        ),
        (
            "netwatch_link_transmit_bytes_total",
            "Bytes transmitted by the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.tx_bytes,
        ),
        (
            "netwatch_link_receive_errors_total",
            "Packets received with errors by the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.rx_errors,
        ),
        (
            "netwatch_link_transmit_errors_total",
            "Packets that failed to transmit on the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.tx_errors,
        ),
        (
            "netwatch_link_receive_drops_total",
            "Received packets the kernel dropped on the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.rx_dropped,
        ),
        (
            "netwatch_link_transmit_drops_total",
            "Packets to transmit the kernel dropped on the interface since the interface was created (the kernel's counter, as ip -s link shows it).",
            |l| l.tx_dropped,
        ),
        (
            "netwatch_link_retransmits_total",
            "TCP segments retransmitted toward destinations routed through the interface since the agent started, in this namespace (segments, as nstat TcpRetransSegs counts them; the kernel keeps no per-interface count).",
            |l| l.retransmits,
        ),
    ];
    for (name, help, value) in counters {
        let mut family = text.family(name, Kind::Counter, help);
        for link in state.links.values() {
            family.sample(&[("interface", &link.name)], value(link));
        }
    }
    type Flag = fn(&LinkStatus) -> bool;
    let gauges: [(&str, &str, Flag); 3] = [
        (
            "netwatch_link_up",
            "1 if the interface is operationally up: operstate up, or unknown (devices that report none, like VXLAN and dummy) with carrier, as the verdict reads it.",
            |l| l.oper == "up" || (l.oper == "unknown" && l.carrier),
        ),
        (
            "netwatch_link_admin_up",
            "1 if the interface is administratively up (IFF_UP).",
            |l| l.admin_up,
        ),
        (
            "netwatch_link_carrier",
            "1 if the interface has carrier (IFF_LOWER_UP).",
            |l| l.carrier,
        ),
    ];
    for (name, help, value) in gauges {
        let mut family = text.family(name, Kind::Gauge, help);
        for link in state.links.values() {
            family.sample(&[("interface", &link.name)], value(link));
        }
    }
    let mut family = text.family(
        "netwatch_link_verdict",
        Kind::Gauge,
        "1 for the interface's current verdict (unknown, up, degraded, down), 0 for the others.",
    );
    for link in state.links.values() {
        verdict(&mut family, &[("interface", &link.name)], &link.verdict);
    }
}

fn endpoints(text: &mut Exposition, state: &NetworkState) {
    let mut family = text.family(
        "netwatch_endpoint_verdict",
        Kind::Gauge,
        "1 for the endpoint's current verdict (unknown, up, degraded, down), 0 for the others.",
    );
    for endpoint in state.endpoints.values() {
        verdict(
            &mut family,
            &[("endpoint", &endpoint.name)],
            &endpoint.verdict,
        );
    }
    let mut family = text.family(
        "netwatch_endpoint_retransmits_total",
        Kind::Counter,
        "TCP segments retransmitted toward the endpoint since the agent started, in this namespace (segments, as nstat TcpRetransSegs counts them).",
    );
    for endpoint in state.endpoints.values() {
        family.sample(&[("endpoint", &endpoint.name)], endpoint.retransmits);
    }
}

fn agent(text: &mut Exposition, costs: &AgentCosts) {
    let mut family = text.family(
        "netwatch_bpf_program_run_time_seconds_total",
        Kind::Counter,
        "Seconds the kernel spent running the program since the agent loaded it, for every network namespace on the host (the kernel accounts per program, not per namespace; 0 unless netwatch_bpf_stats_enabled).",
    );
    for program in &costs.programs {
        // Prometheus wants seconds, its base unit.
        family.sample(
            &[("program", &program.name)],
            program.run_time_ns as f64 / 1e9,
        );
    }
    let mut family = text.family(
        "netwatch_bpf_program_runs_total",
        Kind::Counter,
        "Runs of the program since the agent loaded it, for every network namespace on the host (tracepoints fire for all of them; 0 unless netwatch_bpf_stats_enabled).",
    );
    for program in &costs.programs {
        family.sample(&[("program", &program.name)], program.run_count);
    }
    text.family(
        "netwatch_bpf_stats_enabled",
        Kind::Gauge,
        "1 while the agent holds the kernel's accounting of eBPF program run time for the whole host (BPF_ENABLE_STATS, with [metrics] program_costs = true; it adds two clock reads to every run of every program), else 0.",
    )
    .sample(&[], costs.bpf_stats_enabled);
    let counters = [
        (
            "netwatch_netlink_overruns_total",
            "Times the netlink event socket overran since the agent started; each is followed by a full re-read.",
            costs.netlink_overruns,
        ),
        (
            "netwatch_events_sent_total",
            "TCP events the kernel programs put in the ring buffer since the agent started.",
            costs.kernel.events_sent,
        ),
        (
            "netwatch_events_rate_limited_total",
            "TCP events the kernel programs held back by their rate limit since the agent started (counted, not sent).",
            costs.kernel.events_rate_limited,
        ),
        (
            "netwatch_events_lost_total",
            "TCP events lost because the ring buffer was full, since the agent started.",
            costs.kernel.events_ring_full,
        ),
        (
            "netwatch_dest_insert_failures_total",
            "Destinations the kernel programs could not add to their per-destination map (full) since the agent started.",
            costs.kernel.dest_insert_failed,
        ),
        (
            "netwatch_tcp_events_received_total",
            "TCP events the agent read from the ring buffer since it started.",
            costs.tcp_events_received,
        ),
        (
            "netwatch_fast_link_checks_total",
            "Link re-reads (RTM_GETLINK) the agent made because eBPF signals asked for them, since it started.",
            costs.fast_link_checks,
        ),
    ];
    for (name, help, value) in counters {
        text.family(name, Kind::Counter, help).sample(&[], value);
    }
    // Prometheus's standard process metrics, under their standard names.
    let process = &costs.process;
    text.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    )
    .sample(&[], process.cpu_seconds);
    text.family(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
    )
    .sample(&[], process.resident_bytes);
    text.family(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
    )
    .sample(&[], process.virtual_bytes);
    text.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
    )
    .sample(&[], process.start_time_seconds);
}
