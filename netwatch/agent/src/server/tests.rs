//! The server and the client together, over real sockets in a temporary directory. Timeouts
//! run on tokio's paused clock.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
    sync::watch,
    task::JoinHandle,
};

use super::*;
use netwatch_client::client::{Client, ClientError, WaitStatus};

use crate::state::{Health, LinkStatus, NetworkState, Subject, Verdict};

fn verdict(health: Health, reason: &str) -> Verdict {
    Verdict {
        health,
        reasons: vec![reason.to_string()],
        since_ns: 1_000,
    }
}

fn link(name: &str, health: Health) -> LinkStatus {
    LinkStatus {
        ifindex: 2,
        name: name.to_string(),
        verdict: verdict(health, "test"),
        admin_up: true,
        carrier: health != Health::Down,
        oper: "up".to_string(),
        mtu: 1500,
        mac: None,
        default_route: true,
        xdp: true,
        rx_packets: 10,
        rx_bytes: 1000,
        tx_packets: 5,
        tx_bytes: 500,
        rx_errors: 0,
        tx_errors: 0,
        rx_dropped: 0,
        tx_dropped: 0,
        retransmits: 0,
    }
}

fn state(host: Health, eth0: Health) -> NetworkState {
    let mut state = NetworkState::initial(0);
    state.host = verdict(host, "host test");
    state.links.insert("eth0".to_string(), link("eth0", eth0));
    state
}

struct Served {
    _dir: tempfile::TempDir,
    path: PathBuf,
    source: watch::Sender<Arc<NetworkState>>,
    server: JoinHandle<io::Result<()>>,
}

fn options(path: PathBuf) -> ServerOptions {
    ServerOptions {
        path,
        mode: 0o660,
        group: None,
    }
}

async fn serve_state(initial: NetworkState, limits: Limits) -> Served {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("netwatch.sock");
    let listener = bind(&options(path.clone())).await.expect("binding");
    let (source, watch) = StateWatch::channel(initial);
    let server = tokio::spawn(serve_with(listener, watch, Demand::none(), limits));
    Served {
        _dir: dir,
        path,
        source,
        server,
    }
}

async fn serve(initial: NetworkState) -> Served {
    serve_state(initial, Limits::DEFAULT).await
}

impl Served {
    async fn client(&self) -> Client {
        Client::connect(&self.path).await.unwrap()
    }

    async fn subscribe(&self) -> StateWatch {
        self.client().await.subscribe().await.unwrap()
    }

    async fn raw(&self) -> Raw {
        Raw::connect(&self.path).await
    }

    /// The agent's next state, as the classifier would publish it.
    fn publish(&self, state: NetworkState) {
        self.source.send_replace(Arc::new(state));
    }
}

/// A connection that speaks the protocol by hand, one request and reply at a time (so
/// unlike the client it needs no separate read and write halves).
struct Raw {
    stream: BufReader<UnixStream>,
}

impl Raw {
    async fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).await.expect("connecting");
        Self {
            stream: BufReader::new(stream),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .get_mut()
            .write_all(bytes)
            .await
            .expect("sending");
    }

    /// The next line, or `None` at the end.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        let read = self.stream.read_line(&mut line).await?;
        Ok((read > 0).then_some(line))
    }

    async fn reply(&mut self) -> Value {
        let line = self
            .line()
            .await
            .expect("reading")
            .expect("a reply, not the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// True if the server closed the connection (a reset counts: it had unread input).
    async fn is_closed(&mut self) -> bool {
        matches!(self.line().await, Ok(None) | Err(_))
    }
}

fn assert_error_contains(reply: &Value, needle: &str) {
    let error = reply["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {reply}"));
    assert!(error.contains(needle), "{error}");
}

#[tokio::test]
async fn get_returns_the_state_with_both_clocks() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut client = served.client().await;
    let stamped = client.get_stamped().await.unwrap();
    assert_eq!(stamped.state, state(Health::Up, Health::Up));
    assert!(stamped.clock.at_unix_ms > 1_600_000_000_000);
    assert!(stamped.clock.now_ns > 0);
    // The connection serves more than one request.
    assert_eq!(client.get().await.unwrap(), stamped.state);
}

#[tokio::test]
async fn a_subscriber_sees_a_change_pushed_through_the_source() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut watch = served.subscribe().await;
    assert_eq!(*watch.current(), state(Health::Up, Health::Up));
    served.publish(state(Health::Down, Health::Down));
    let changed = watch.changed().await.expect("a change");
    assert_eq!(*changed, state(Health::Down, Health::Down));
}

#[tokio::test]
async fn a_change_line_names_the_changed_subjects() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut raw = served.raw().await;
    raw.send(b"{\"request\":\"subscribe\"}\n").await;
    let first = raw.reply().await;
    assert_eq!(first["reply"], "state");
    assert!(first["at_unix_ms"].is_u64() && first["now_ns"].is_u64());
    // A state whose verdicts are the same is not a change.
    let mut same = state(Health::Up, Health::Up);
    same.links.get_mut("eth0").unwrap().rx_packets += 1;
    served.publish(same);
    served.publish(state(Health::Up, Health::Degraded));
    let change = raw.reply().await;
    assert_eq!(change["reply"], "change");
    assert_eq!(change["subjects"], serde_json::json!(["link:eth0"]));
    assert_eq!(
        change["state"]["links"]["eth0"]["verdict"]["health"],
        "degraded"
    );
}

#[tokio::test]
async fn requests_on_a_subscribed_connection_are_refused() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut raw = served.raw().await;
    raw.send(b"{\"request\":\"subscribe\"}\n{\"request\":\"get\"}\n")
        .await;
    assert_eq!(raw.reply().await["reply"], "state");
    let refusal = raw.reply().await;
    assert_error_contains(&refusal, "open another connection");
}

#[tokio::test]
async fn a_subscription_ends_when_the_agent_stops() {
    let served = serve(state(Health::Down, Health::Down)).await;
    let mut watch = served.subscribe().await;
    drop(served.source);
    served.server.await.unwrap().expect("serve ends cleanly");
    assert_eq!(watch.changed().await, None);
    assert_eq!(
        watch.wait_for_network(Duration::from_secs(1)).await,
        crate::state::WaitOutcome::SourceClosed
    );
}

#[tokio::test(start_paused = true)]
async fn wait_is_up_at_once_when_already_up() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut client = served.client().await;
    let started = tokio::time::Instant::now();
    let reply = client
        .wait(&Subject::Link("eth0".into()), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reply.outcome, WaitStatus::Up);
    assert_eq!(reply.verdict.unwrap().health, Health::Up);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn wait_is_up_as_soon_as_a_change_makes_it_so() {
    let served = serve(state(Health::Down, Health::Down)).await;
    let mut client = served.client().await;
    let started = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move {
        client
            .wait(&Subject::Host, Duration::from_secs(30))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    served.publish(state(Health::Up, Health::Up));
    let reply = waiter.await.unwrap();
    assert_eq!(reply.outcome, WaitStatus::Up);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn wait_at_the_deadline_is_down_if_down_and_timeout_otherwise() {
    for (health, expected) in [
        (Health::Down, WaitStatus::Down),
        (Health::Degraded, WaitStatus::Timeout),
        (Health::Unknown, WaitStatus::Timeout),
    ] {
        let served = serve(state(health, Health::Up)).await;
        let mut client = served.client().await;
        let started = tokio::time::Instant::now();
        let reply = client
            .wait(&Subject::Host, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(reply.outcome, expected, "{health}");
        assert_eq!(reply.verdict.unwrap().health, health);
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_an_unknown_subject_times_out_without_a_verdict() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut client = served.client().await;
    let reply = client
        .wait(&Subject::Endpoint("api".into()), Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(reply.outcome, WaitStatus::Timeout);
    assert_eq!(reply.verdict, None);
}

#[tokio::test]
async fn bad_requests_get_an_error_and_the_connection_stays_usable() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut raw = served.raw().await;
    for (line, expected) in [
        (&b"{not json\n"[..], "not JSON"),
        (b"{\"request\":\"dance\"}\n", "unknown request \"dance\""),
        (
            b"{\"request\":\"wait\",\"subject\":\"router\",\"timeout_ms\":5}\n",
            "`router` is not a subject",
        ),
        (b"\xff\xfe\n", "not UTF-8"),
    ] {
        raw.send(line).await;
        let reply = raw.reply().await;
        assert_eq!(reply["reply"], "error");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
    }
    // Blank lines are skipped; the connection still answers.
    raw.send(b"\n{\"request\":\"get\"}\n").await;
    assert_eq!(raw.reply().await["reply"], "state");
}

#[tokio::test]
async fn the_client_reports_a_refusal_with_the_servers_reason() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut client = served.client().await;
    let error = client
        .wait(&Subject::Host, Duration::from_secs(2 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused { message, .. } if message.contains("timeout_ms")),
        "{error}"
    );
    // Still usable.
    client.get().await.unwrap();
}

#[tokio::test]
async fn an_over_long_line_is_refused_and_the_connection_closed() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut raw = served.raw().await;
    let mut line = vec![b' '; protocol::MAX_LINE + 10];
    line.push(b'\n');
    raw.send(&line).await;
    let reply = raw.reply().await;
    assert_error_contains(&reply, "longer than 65536");
    assert!(raw.is_closed().await);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_a_reason() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mut raw = served.raw().await;
    let reply = raw.reply().await;
    assert_error_contains(&reply, "no request for 30s");
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn clients_beyond_the_limit_are_refused() {
    let limits = Limits {
        slots: slots::SlotLimits {
            total: 1,
            reserved_for_root: 0,
            per_uid: 1,
        },
        ..Limits::DEFAULT
    };
    let served = serve_state(state(Health::Up, Health::Up), limits).await;
    let mut first = served.client().await;
    first.get().await.unwrap();
    let mut second = served.raw().await;
    let reply = second.reply().await;
    assert_error_contains(&reply, "too many clients");
    assert!(second.is_closed().await);
    // The slot is freed when the first leaves.
    drop(first);
    for _ in 0..1000 {
        let mut client = served.client().await;
        if client.get().await.is_ok() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the first client's slot was never freed");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netwatch.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the dead listener left its file");
    let listener = bind(&options(path.clone())).await.expect("replacing it");
    let (_source, watch) = StateWatch::channel(state(Health::Up, Health::Up));
    tokio::spawn(super::serve(listener, watch, Demand::none()));
    let mut client = Client::connect(&path).await.unwrap();
    client.get().await.unwrap();
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let error = bind(&options(served.path.clone())).await.unwrap_err();
    assert!(
        matches!(error, ServerError::AlreadyServing { .. }),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains(&format!("already serving at {}", served.path.display())));
    // The first agent still serves.
    served.client().await.get().await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netwatch.sock");
    std::fs::write(&path, "keep me").unwrap();
    let error = bind(&options(path.clone())).await.unwrap_err();
    assert!(matches!(error, ServerError::NotASocket { .. }), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[tokio::test]
async fn the_socket_gets_the_configured_mode_and_group_in_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/netwatch/netwatch.sock");
    // SAFETY: getegid cannot fail.
    let gid = unsafe { libc::getegid() };
    let group_name = crate::accounts::group_name(gid)
        .unwrap()
        .expect("our group has a name");
    let _listener = bind(&ServerOptions {
        path: path.clone(),
        mode: 0o640,
        group: Some(group_name),
    })
    .await
    .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), gid);
    let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert!(parent.is_dir());
}

#[tokio::test]
async fn an_unknown_group_is_named_and_no_socket_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netwatch.sock");
    let error = bind(&ServerOptions {
        path: path.clone(),
        mode: 0o660,
        group: Some("netwatch-no-such-group".to_string()),
    })
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("group `netwatch-no-such-group` does not exist"),
        "{error}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn connecting_to_a_missing_socket_says_to_start_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netwatch.sock");
    let error = Client::connect(&path).await.err().expect("no agent");
    assert!(matches!(error, ClientError::NotRunning { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("netwatch agent"), "{message}");
}

#[tokio::test]
async fn a_directory_others_can_write_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.path().join("netwatch.sock");
    let error = bind(&options(path.clone())).await.unwrap_err();
    assert!(
        matches!(error, ServerError::UnsafeDirectory { .. })
            && error.to_string().contains("lets others write to it"),
        "{error}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn the_socket_gets_its_mode_at_creation() {
    let served = serve(state(Health::Up, Health::Up)).await;
    let mode = std::fs::symlink_metadata(&served.path).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o660);
}
