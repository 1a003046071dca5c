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
