//! The agent under a service manager: it tells `$NOTIFY_SOCKET` READY=1 only once its
//! programs are attached and its socket serves (what systemd waits for before starting the
//! units ordered after `netwatch.service`), and STOPPING=1 when told to stop.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, SystemTime};

use netwatch_tests::agent::{on_link, seconds_after, Agent, Launch};
use netwatch_tests::require_privileges;
use netwatch_tests::topology::Pair;

const STARTUP: Duration = Duration::from_secs(30);

#[test]
fn ready_comes_once_everything_is_attached_and_stopping_on_sigterm() {
    require_privileges();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&path).expect("binding the manager's socket");
    manager
        .set_read_timeout(Some(STARTUP))
        .expect("a read timeout");
    let target = path.to_str().expect("a UTF-8 path");
    let mut agent = Agent::launch(
        &pair.b,
        &Launch {
            env: &[("NOTIFY_SOCKET", target)],
            ..Launch::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));

    let mut buffer = [0u8; 512];
    let n = manager
        .recv(&mut buffer)
        .unwrap_or_else(|e| panic!("no READY=1 within {STARTUP:?}: {e}; {}", agent.tail()));
    let heard_at = SystemTime::now();
    let ready = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(
        ready.lines().any(|line| line == "READY=1"),
        "the first notification is not READY=1: {ready:?}"
    );
    assert!(
        ready
            .lines()
            .any(|line| line.starts_with("STATUS=watching ")),
        "{ready:?}"
    );
    // What READY=1 promises had happened before it came: the agent logged each first.
    for (message, on_b) in [
        ("tracepoints attached", false),
        ("receive counter attached", true),
        ("agent ready", false),
    ] {
        let line = agent.wait_for(
            message,
            |l| !on_b || on_link(pair.b_index)(l),
            Duration::from_secs(5),
        );
        let ahead = -seconds_after(heard_at, &line["timestamp"]);
        assert!(
            ahead >= 0.0,
            "READY=1 came {:.3} s before `{message}`: {line}",
            -ahead
        );
    }
    agent
        .get()
        .expect("a client is answered as soon as READY=1 came");

    let status = agent.terminate();
    assert!(status.success(), "{status}: {}", agent.tail());
    let n = manager
        .recv(&mut buffer)
        .expect("STOPPING=1 after the SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buffer[..n]), "STOPPING=1");
}

/// `netwatch check` against the running agent, as node-problem-detector runs it.
fn check(socket: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(netwatch_tests::agent::binary())
        .arg("check")
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .output()
        .expect("running netwatch check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn check_answers_in_node_problem_detectors_protocol() {
    use netwatch_client::state::{Health, Subject};
    use netwatch_tests::verdicts::{health, Subscription};

    require_privileges();
    let pair = Pair::new();
    pair.default_route_via_a();
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let socket = agent.socket().to_path_buf();
    let sub = Subscription::connect(&socket);
    let _ping = pair.ping_a_from_b("0.1", 300, Duration::from_secs(40));
    sub.wait_for(
        "the host Up",
        |s| health(s, &Subject::Host) == Some(Health::Up),
        Duration::from_secs(10),
    );
    let (code, line) = check(&socket, &[]);
    assert_eq!(code, Some(0), "{line}");
    assert!(line.starts_with("host is up ("), "{line}");
    let (code, line) = check(&socket, &["--endpoint", "nowhere"]);
    assert_eq!(code, Some(2), "{line}");

    pair.b
        .block_on(netwatch_tests::topology::set_link_up(pair.b_index, false));
    sub.wait_for(
        "the host Down",
        |s| health(s, &Subject::Host) == Some(Health::Down),
        Duration::from_secs(10),
    );
    let (code, line) = check(&socket, &[]);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.starts_with("host is down ("), "{line}");

    drop(sub);
    drop(agent);
    let (code, line) = check(&socket, &[]);
    assert_eq!(code, Some(2), "with no agent: {line}");
    assert!(line.starts_with("no verdict: "), "{line}");
}
