//! Clients of a running agent: who may connect to its socket, `status` and `watch` as an
//! unprivileged user, `wait-online`'s exit statuses, and the metrics endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::agent::Agent;
use netwatch_tests::require_privileges;
use netwatch_tests::topology::{set_link_up, Pair, PairOptions};
use netwatch_tests::users::{as_nobody, describe, run_bounded, wait_bounded, USERS_GID};
use netwatch_tests::verdicts::{health, Subscription};

const STARTUP: Duration = Duration::from_secs(30);
const VERDICT: Duration = Duration::from_secs(10);
fn assert_refused(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() == Some(1) && stderr.to_lowercase().contains("permission denied"),
        "`{what}` without the socket's group must fail with status 1 and say permission was \
         denied: {}",
        describe(output)
    );
}

#[test]
fn a_group_member_gets_state_and_changes_and_others_are_refused() {
    require_privileges();
    let pair = Pair::new();
    let agent = Agent::start_with(
        &pair.b,
        &[],
        Some("[socket]\nmode = \"0660\"\ngroup = \"users\"\n"),
    );
    agent.wait_for("agent ready", |_| true, STARTUP);
    let socket = agent.socket().to_str().expect("a UTF-8 socket path");
    let meta = std::fs::metadata(socket).unwrap_or_else(|e| panic!("{socket}: {e}"));
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o660, USERS_GID),
        "{socket} should be mode 0660, group users"
    );

    let status = run_bounded(
        as_nobody(true, &["status", "--json", "--socket", socket]),
        VERDICT,
    );
    assert!(
        status.status.success(),
        "`status` as a member of users: {}",
        describe(&status)
    );
    let reply: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "`status --json` printed no JSON ({e}): {}",
            describe(&status)
        )
    });
    assert_eq!(reply["reply"], "state", "{reply}");
    assert!(
        reply["state"]["links"][&pair.b_if].is_object(),
        "the state has no link {}: {reply}",
        pair.b_if
    );

    // `watch` prints the state, then a line for the change this test causes.
    let mut watch = as_nobody(true, &["watch", "--json", "--socket", socket])
        .spawn()
        .expect("start `netwatch watch` as nobody");
    let stdout = watch.stdout.take().expect("stdout is piped");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_reply = |what: &str| -> serde_json::Value {
        let line = lines
            .recv_timeout(VERDICT)
            .unwrap_or_else(|_| panic!("`watch --json` printed no {what} line within {VERDICT:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("`watch --json` printed a line that is not JSON ({e}): {line}")
        })
    };
    let first = next_reply("state");
    assert_eq!(first["reply"], "state", "{first}");
    pair.a.block_on(set_link_up(pair.a_index, false));
    let subject = format!("link:{}", pair.b_if);
    let change = loop {
        let change = next_reply("change");
        assert_eq!(change["reply"], "change", "{change}");
        let subjects = change["subjects"].as_array().cloned().unwrap_or_default();
        if subjects.iter().any(|s| s == subject.as_str()) {
            break change;
        }
    };
    assert_eq!(
        change["state"]["links"][&pair.b_if]["verdict"]["health"], "down",
        "{change}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();

    // Without the group: refused, with a message that says so.
    let status = run_bounded(
        as_nobody(false, &["status", "--json", "--socket", socket]),
        VERDICT,
    );
    assert_refused("status --json", &status);
    let watch = run_bounded(
        as_nobody(false, &["watch", "--json", "--socket", socket]),
        VERDICT,
    );
    assert_refused("watch --json", &watch);
}

#[test]
fn wait_online_exits_at_once_when_up_and_with_its_status_otherwise() {
    require_privileges();
    // No IPv6: the link carries nothing this test does not send, so it starts Unknown.
    let pair = Pair::with(PairOptions {
        ipv6: false,
        ..PairOptions::default()
    });
    pair.default_route_via_a();
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let socket = agent.socket().to_str().expect("a UTF-8 socket path");
    let sub = Subscription::connect(agent.socket());
    let wait_online = |timeout: &str| {
        as_nobody(
            false,
            &["wait-online", "--socket", socket, "--timeout", timeout],
        )
    };

    // No traffic: Unknown, until a client waits: the agent then asks the kernel to
    // re-validate the gateway, which answers, and the host is Up.
    sub.wait_for(
        "the host unknown",
        |s| health(s, &Subject::Host) == Some(Health::Unknown),
        VERDICT,
    );
    let idle = run_bounded(wait_online("10"), VERDICT);
    assert_eq!(
        idle.status.code(),
        Some(0),
        "wait-online on an idle healthy host: {}",
        describe(&idle)
    );
    agent.wait_for(
        "asked the kernel to re-validate a neighbour on the local link",
        |line| line["neighbour"] == pair.a_v4.to_string(),
        VERDICT,
    );

    // Something the agent does not know: the timeout status.
    let unknown = run_bounded(
        as_nobody(
            false,
            &[
                "wait-online",
                "--socket",
                socket,
                "--timeout",
                "1s",
                "--endpoint",
                "nope",
            ],
        ),
        VERDICT,
    );
    assert_eq!(
        unknown.status.code(),
        Some(3),
        "wait-online on an unknown endpoint: {}",
        describe(&unknown)
    );

    // The peer down: Down when the timeout passes.
    pair.a.block_on(set_link_up(pair.a_index, false));
    sub.wait_for(
        "the host down",
        |s| health(s, &Subject::Host) == Some(Health::Down),
        VERDICT,
    );
    let down = run_bounded(wait_online("2s"), VERDICT);
    assert_eq!(
        down.status.code(),
        Some(4),
        "wait-online on a Down host: {}",
        describe(&down)
    );

    // Waiting while it is down; the peer comes back with traffic: it returns at once.
    let waiting = wait_online("20s")
        .spawn()
        .expect("start `netwatch wait-online`");
    // Long enough for it to connect and send its wait before anything changes.
    std::thread::sleep(Duration::from_millis(300));
    let back_at = Instant::now();
    pair.a.block_on(set_link_up(pair.a_index, true));
    let _ping = pair.ping_a_from_b("0.2", 50, Duration::from_secs(15));
    let online = wait_bounded(waiting, Duration::from_secs(25));
    let took = back_at.elapsed();
    eprintln!(
        "wait-online --timeout 20s returned {:.2}s after the peer came back: {}",
        took.as_secs_f64(),
        online.status
    );
    assert_eq!(
        online.status.code(),
        Some(0),
        "wait-online once the link is back: {}",
        describe(&online)
    );
    assert!(
        took < Duration::from_secs(10),
        "wait-online returned {took:?} after the link came back: not at once (its timeout was 20 s)"
    );
}

#[test]
fn metrics_are_served_inside_the_agents_namespace() {
    require_privileges();
    let pair = Pair::new();
    // Loopback is down in a new namespace; the exporter listens on it.
    pair.b.block_on(set_link_up(1, true));
    let agent = Agent::start_with(&pair.b, &["--metrics", "127.0.0.1:9477"], None);
    agent.wait_for("serving metrics", |_| true, STARTUP);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let wanted = ["netwatch_link_verdict", "netwatch_bpf_program_runs_total"];
    // Program run counts appear once the agent has gathered its costs (every 0.5 s).
    let deadline = Instant::now() + VERDICT;
    let body = loop {
        let body = pair.b.run(|| fetch_metrics("127.0.0.1:9477"));
        let missing: Vec<_> = wanted
            .iter()
            .filter(|name| !body.lines().any(|line| line.starts_with(*name)))
            .collect();
        if missing.is_empty() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics has no {missing:?} lines after {VERDICT:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let link_line = format!("interface=\"{}\"", pair.b_if);
    assert!(
        body.lines()
            .any(|l| l.starts_with("netwatch_link_verdict") && l.contains(&link_line)),
        "no netwatch_link_verdict line for {}:\n{body}",
        pair.b_if
    );
    let lint = netwatch_tests::metrics::promtool_check(&body).expect("promtool runs");
    assert!(
        lint.trim().is_empty(),
        "promtool check metrics complains about the agent's metrics:\n{lint}\n{body}"
    );
    // The kernel's run-time accounting is host-wide and costly: off unless asked for.
    assert!(
        body.lines().any(|l| l == "netwatch_bpf_stats_enabled 0"),
        "the agent turned on the kernel's program accounting without [metrics] program_costs:\n{body}"
    );
}

/// GET /metrics over plain HTTP/1.0 (no chunked body to undo), in the calling thread's
/// namespace; returns the body.
fn fetch_metrics(addr: &str) -> String {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(VERDICT))
        .expect("a read timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .unwrap_or_else(|e| panic!("sending the request to {addr}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("reading the response from {addr}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET /metrics answered {head}"
    );
    body.to_string()
}
