use std::{collections::HashMap, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

use super::*;
use crate::{
    ebpf::KernelStats,
    state::{EndpointStatus, Health, LinkStatus, NetworkState, StateWatch, Verdict},
};

const FAMILIES: [(&str, &str); 32] = [
    ("netwatch_link_receive_packets_total", "counter"),
    ("netwatch_link_transmit_packets_total", "counter"),
    ("netwatch_link_receive_bytes_total", "counter"),
    ("netwatch_link_transmit_bytes_total", "counter"),
    ("netwatch_link_receive_errors_total", "counter"),
    ("netwatch_link_transmit_errors_total", "counter"),
    ("netwatch_link_receive_drops_total", "counter"),
    ("netwatch_link_transmit_drops_total", "counter"),
    ("netwatch_link_retransmits_total", "counter"),
    ("netwatch_link_up", "gauge"),
    ("netwatch_link_admin_up", "gauge"),
    ("netwatch_link_carrier", "gauge"),
    ("netwatch_link_verdict", "gauge"),
    ("netwatch_endpoint_verdict", "gauge"),
    ("netwatch_endpoint_retransmits_total", "counter"),
    ("netwatch_host_verdict", "gauge"),
    ("netwatch_bpf_program_run_time_seconds_total", "counter"),
    ("netwatch_bpf_program_runs_total", "counter"),
    ("netwatch_bpf_stats_enabled", "gauge"),
    ("netwatch_netlink_overruns_total", "counter"),
    ("netwatch_events_sent_total", "counter"),
    ("netwatch_events_rate_limited_total", "counter"),
    ("netwatch_events_lost_total", "counter"),
    ("netwatch_dest_insert_failures_total", "counter"),
    ("netwatch_tcp_events_received_total", "counter"),
    ("netwatch_fast_link_checks_total", "counter"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    // Listed twice on purpose: a family must appear once however many samples it has.
    ("netwatch_link_verdict", "gauge"),
    ("netwatch_host_verdict", "gauge"),
];

fn verdict(health: Health) -> Verdict {
    Verdict {
        health,
        reasons: vec!["test".into()],
        since_ns: 0,
    }
}

fn link(name: &str, health: Health) -> LinkStatus {
    LinkStatus {
        ifindex: 2,
        name: name.into(),
        verdict: verdict(health),
        admin_up: true,
        carrier: false,
        oper: "up".into(),
        mtu: 1500,
        mac: None,
        default_route: true,
        xdp: true,
        rx_packets: 1,
        rx_bytes: 2,
        tx_packets: 3,
        tx_bytes: 4,
        rx_errors: 5,
        tx_errors: 6,
        rx_dropped: 7,
        tx_dropped: 8,
        retransmits: 9,
    }
}

fn state() -> NetworkState {
    let mut state = NetworkState::initial(0);
    state.host = verdict(Health::Degraded);
    for (name, health) in [("eth0", Health::Up), ("wlan0", Health::Down)] {
        state.links.insert(name.into(), link(name, health));
    }
    let name = "we\"ird\\name\n";
    state.endpoints.insert(
        name.into(),
        EndpointStatus {
            name: name.into(),
            address: "198.18.0.2:443".into(),
            verdict: verdict(Health::Unknown),
            via: Some("eth0".into()),
            retransmits: 11,
        },
    );
    state
}

fn costs() -> AgentCosts {
    AgentCosts {
        programs: vec![ProgramCost {
            name: "netwatch_xdp".into(),
            id: 42,
            run_time_ns: 1_500_000_000,
            run_count: 1000,
        }],
        bpf_stats_enabled: true,
        netlink_overruns: 1,
        kernel: KernelStats {
            events_sent: 20,
            events_rate_limited: 21,
            events_ring_full: 22,
            dest_insert_failed: 23,
        },
        tcp_events_received: 19,
        fast_link_checks: 5,
        process: ProcessUsage {
            resident_bytes: 12 << 20,
            virtual_bytes: 100 << 20,
            cpu_seconds: 2.25,
            start_time_seconds: 1_700_000_000.5,
        },
    }
}

/// Sample lines as `name{labels}` -> value.
fn samples(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.rsplit_once(' ').expect("a sample is `name value`"))
        .collect()
}

#[test]
fn every_family_is_written_once_with_help_and_type_even_without_samples() {
    for text in [
        render(&NetworkState::initial(0), &AgentCosts::default()),
        render(&state(), &costs()),
    ] {
        for (name, kind) in FAMILIES {
            assert_eq!(
                text.matches(&format!("\n# TYPE {name} {kind}\n")).count(),
                1,
                "{name} {kind}"
            );
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1);
        }
    }
}

#[test]
fn every_sample_belongs_to_a_declared_family_and_has_a_number() {
    let text = render(&state(), &costs());
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ") {
            declared.push(name.split(' ').next().unwrap());
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert_eq!(declared.last(), Some(&name), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
}

#[test]
fn links_show_their_counters_flags_and_one_hot_verdict() {
    let text = render(&state(), &costs());
    let samples = samples(&text);
    for (name, value) in [
        ("netwatch_link_receive_packets_total", "1"),
        ("netwatch_link_receive_bytes_total", "2"),
        ("netwatch_link_transmit_packets_total", "3"),
        ("netwatch_link_transmit_bytes_total", "4"),
        ("netwatch_link_receive_errors_total", "5"),
        ("netwatch_link_transmit_errors_total", "6"),
        ("netwatch_link_receive_drops_total", "7"),
        ("netwatch_link_transmit_drops_total", "8"),
        ("netwatch_link_retransmits_total", "9"),
        ("netwatch_link_up", "1"),
        ("netwatch_link_admin_up", "1"),
        ("netwatch_link_carrier", "0"),
    ] {
        assert_eq!(
            samples[&*format!("{name}{{interface=\"eth0\"}}")],
            value,
            "{name}"
        );
    }
    for (interface, current) in [("eth0", "up"), ("wlan0", "down")] {
        for health in ["unknown", "up", "degraded", "down"] {
            let series =
                format!("netwatch_link_verdict{{interface=\"{interface}\",verdict=\"{health}\"}}");
            let expected = if health == current { "1" } else { "0" };
            assert_eq!(samples[&*series], expected, "{series}");
        }
    }
    for (health, expected) in [
        ("unknown", "0"),
        ("up", "0"),
        ("degraded", "1"),
        ("down", "0"),
    ] {
        let series = format!("netwatch_host_verdict{{verdict=\"{health}\"}}");
        assert_eq!(samples[&*series], expected, "{series}");
    }
}

#[test]
fn endpoint_names_are_escaped_in_labels() {
    let text = render(&state(), &costs());
    let samples = samples(&text);
    let label = r#"endpoint="we\"ird\\name\n""#;
    assert_eq!(
        samples[&*format!("netwatch_endpoint_retransmits_total{{{label}}}")],
        "11"
    );
    for (health, expected) in [
        ("unknown", "1"),
        ("up", "0"),
        ("degraded", "0"),
        ("down", "0"),
    ] {
        let series = format!("netwatch_endpoint_verdict{{{label},verdict=\"{health}\"}}");
        assert_eq!(samples[&*series], expected, "{series}");
    }
}

#[test]
fn agent_costs_are_shown_in_base_units() {
    let text = render(&state(), &costs());
    let samples = samples(&text);
    for (series, value) in [
        (
            "netwatch_bpf_program_run_time_seconds_total{program=\"netwatch_xdp\"}",
            "1.5",
        ),
        (
            "netwatch_bpf_program_runs_total{program=\"netwatch_xdp\"}",
            "1000",
        ),
        ("netwatch_bpf_stats_enabled", "1"),
        ("netwatch_netlink_overruns_total", "1"),
        ("netwatch_events_sent_total", "20"),
        ("netwatch_events_rate_limited_total", "21"),
        ("netwatch_events_lost_total", "22"),
        ("netwatch_dest_insert_failures_total", "23"),
        ("netwatch_tcp_events_received_total", "19"),
        ("netwatch_fast_link_checks_total", "5"),
        ("process_resident_memory_bytes", "12582912"),
        ("process_virtual_memory_bytes", "104857600"),
        ("process_cpu_seconds_total", "2.25"),
        ("process_start_time_seconds", "1700000000.5"),
    ] {
        assert_eq!(samples[series], value, "{series}");
    }
}

async fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the exporter");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn the_exporter_serves_metrics_on_loopback_and_stops_with_its_source() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (state_sender, state_watch) = StateWatch::channel(state());
    let (_costs_sender, costs_receiver) = watch::channel(Arc::new(costs()));
    let server = tokio::spawn(serve(
        listener,
        super::Access::default(),
        state_watch,
        costs_receiver,
    ));

    let response = get(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(body, render(&state(), &costs()));

    let response = get(
        addr,
        "GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{response}"
    );

    drop(state_sender);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn binding_a_taken_address_names_it() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let message = bind(addr).await.unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("cannot serve metrics on {addr}: another process")),
        "{message}"
    );
}

#[test]
fn a_device_without_an_operstate_is_up_with_carrier() {
    let mut state = state();
    for (name, carrier) in [("vxlan77", true), ("vxlan78", false)] {
        let mut vxlan = link(name, Health::Up);
        (vxlan.oper, vxlan.carrier) = ("unknown".into(), carrier);
        state.links.insert(name.into(), vxlan);
    }
    let text = render(&state, &costs());
    let samples = samples(&text);
    assert_eq!(samples["netwatch_link_up{interface=\"vxlan77\"}"], "1");
    assert_eq!(samples["netwatch_link_up{interface=\"vxlan78\"}"], "0");
}
