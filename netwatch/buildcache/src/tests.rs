//! The server end to end on loopback, with `file://` mirrors, a mirror that never answers,
//! and verdicts from a channel: what a build tool sees, and what reaches the mirrors.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use netwatch_client::state::{EndpointStatus, Health, NetworkState, Verdict};
use netwatch_transfer::{Access, Digest, MirrorStore, MirrorUrl, Scoreboard};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use crate::{bind, serve, BuildCache, Lookup, Snapshot, Verdicts};

type State = watch::Sender<Option<Arc<NetworkState>>>;

struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    cache: Arc<BuildCache>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn mirror(name: &str, url: &str, endpoint: Option<&str>) -> MirrorStore {
    let url: MirrorUrl = url.parse().unwrap();
    MirrorStore::open(name, &url, Access::Write)
        .unwrap()
        .with_endpoint(endpoint.map(str::to_string))
}

fn file_mirror(name: &str, dir: &Path) -> MirrorStore {
    mirror(name, &format!("file://{}", dir.display()), Some(name))
}

async fn start(root: &Path, mirrors: Vec<MirrorStore>, state: &State) -> Server {
    let cancel = CancellationToken::new();
    let lookup = Lookup {
        mirrors,
        verdicts: Verdicts::from_channel(state.subscribe()),
        board: Scoreboard::in_memory(),
        hedge: Duration::from_millis(40),
        deadline: Duration::from_millis(300),
        max_entry: 1 << 20,
    };
    let cache = Arc::new(BuildCache::start(root, lookup, Some(64 << 10), &cancel).unwrap());
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Arc::clone(&cache), cancel.clone()));
    Server {
        addr,
        cancel,
        cache,
    }
}

/// One HTTP/1.0 exchange: the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a reply with headers");
    let status = std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap();
    (status, reply[split + 4..].to_vec())
}

fn state_with(endpoint: &str, health: Health) -> Option<Arc<NetworkState>> {
    let mut state = NetworkState::initial(0);
    state.host.health = Health::Up;
    state.endpoints.insert(
        endpoint.to_string(),
        EndpointStatus {
            name: endpoint.to_string(),
            address: "192.0.2.1:80".to_string(),
            verdict: Verdict {
                health,
                reasons: Vec::new(),
                since_ns: 0,
            },
            via: None,
            retransmits: 0,
        },
    );
    Some(Arc::new(state))
}

/// Writes `bytes` where a `file://` mirror at `dir` keeps `key`'s entry.
fn place(dir: &Path, key: &crate::EntryKey, bytes: &[u8]) {
    let file = dir.join(key.object_path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, bytes).unwrap();
}

fn stored_on(dir: &Path) -> usize {
    let root = dir.join("buildcache/v1");
    std::fs::read_dir(&root)
        .map(|dirs| {
            dirs.map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
                .sum()
        })
        .unwrap_or(0)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(server: &Server) -> Snapshot {
    server.cache.snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_reaches_every_mirror_and_another_host_reads_it_from_them() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (host_a, host_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, _) = watch::channel(None);
    let mirrors = || vec![file_mirror("a", a.path()), file_mirror("b", b.path())];

    let first = start(host_a.path(), mirrors(), &state).await;
    assert_eq!(
        request(first.addr, "GET", "/ccache/ab/cdef", b"").await.0,
        404
    );
    assert_eq!(
        request(first.addr, "PUT", "/ccache/ab/cdef", b"object")
            .await
            .0,
        201
    );
    assert_eq!(
        request(first.addr, "GET", "/ccache/ab/cdef", b"").await,
        (200, b"object".to_vec())
    );
    until("the write-back to both mirrors", || {
        stored_on(a.path()) == 1 && stored_on(b.path()) == 1
    })
    .await;
    let figures = status(&first);
    assert_eq!(
        (figures.local_hits, figures.misses, figures.stores),
        (1, 1, 1)
    );
    assert!(figures
        .mirrors
        .iter()
        .all(|m| m.uploaded == 1 && m.queued == 0));

    // Another host, nothing local: served by a mirror, then kept locally.
    let second = start(host_b.path(), mirrors(), &state).await;
    assert_eq!(
        request(second.addr, "GET", "/ccache/ab/cdef", b"").await,
        (200, b"object".to_vec())
    );
    let (head, body) = request(second.addr, "HEAD", "/ccache/ab/cdef", b"").await;
    assert_eq!((head, body.len()), (200, 0));
    let figures = status(&second);
    assert_eq!((figures.mirror_hits, figures.local_hits), (1, 1));
    let json = request(second.addr, "GET", "/_netwatch/status", b"").await;
    let parsed: Snapshot = serde_json::from_slice(&json.1).unwrap();
    assert_eq!(parsed.mirror_hits, 1);
    let metrics = request(second.addr, "GET", "/_netwatch/metrics", b"").await;
    let text = String::from_utf8(metrics.1).unwrap();
    assert!(
        text.contains("netwatch_buildcache_mirror_hits_total 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_mirror_entry_is_a_miss_and_the_next_mirror_serves() {
    let (a, b, host) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (state, _) = watch::channel(None);
    let key = crate::EntryKey::from_path("/ccache/x").unwrap();
    let sealed = key.seal(b"good").unwrap();
    for (dir, bytes) in [
        (a.path(), &sealed[..sealed.len() - 1]),
        (b.path(), &sealed[..]),
    ] {
        place(dir, &key, bytes);
    }
    let server = start(
        host.path(),
        vec![file_mirror("a", a.path()), file_mirror("b", b.path())],
        &state,
    )
    .await;
    assert_eq!(
        request(server.addr, "GET", "/ccache/x", b"").await,
        (200, b"good".to_vec())
    );
    assert_eq!(status(&server).mirrors[1].hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_called_down_is_never_asked_and_its_queue_waits_then_flushes() {
    let (a, host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, _) = watch::channel(state_with("a", Health::Down));
    let server = start(host.path(), vec![file_mirror("a", a.path())], &state).await;

    // An entry only the mirror has: while it is Down, a lookup is a miss at once.
    let key = crate::EntryKey::from_path("/ccache/only-there").unwrap();
    place(a.path(), &key, &key.seal(b"x").unwrap());
    let asked = Instant::now();
    assert_eq!(
        request(server.addr, "GET", "/ccache/only-there", b"")
            .await
            .0,
        404
    );
    assert!(
        asked.elapsed() < Duration::from_millis(250),
        "a Down mirror's miss waited"
    );

    assert_eq!(
        request(server.addr, "PUT", "/ccache/new", b"y").await.0,
        201
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_on(a.path()), 1, "nothing is written while Down");
    assert_eq!(status(&server).mirrors[0].queued, 1);

    // The queue survives a restart, and flushes once the mirror is Up.
    drop(server);
    state.send_replace(state_with("a", Health::Up));
    let again = start(host.path(), vec![file_mirror("a", a.path())], &state).await;
    until("the queued entry to reach the mirror", || {
        stored_on(a.path()) == 2
    })
    .await;
    until("the queue to empty", || {
        status(&again).mirrors[0].queued == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_never_answers_costs_a_lookup_the_deadline_and_no_more() {
    let host = tempfile::tempdir().unwrap();
    // A listener that accepts and never answers: a mirror whose path was cut.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let (state, _) = watch::channel(None);
    let server = start(host.path(), vec![mirror("silent", &url, None)], &state).await;
    let asked = Instant::now();
    assert_eq!(request(server.addr, "GET", "/ccache/k", b"").await.0, 404);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(status(&server).deadline_misses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_reasons() {
    let host = tempfile::tempdir().unwrap();
    let (state, _) = watch::channel(None);
    let server = start(host.path(), Vec::new(), &state).await;
    let right = Digest::sha256(b"blob");
    assert_eq!(
        request(server.addr, "PUT", &format!("/cas/{right}"), b"blob")
            .await
            .0,
        201
    );
    let (code, why) = request(server.addr, "PUT", &format!("/cas/{right}"), b"other").await;
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&why).contains("SHA-256"));
    assert_eq!(request(server.addr, "GET", "/a/../b", b"").await.0, 400);
    let big = vec![0u8; (1 << 20) + 1];
    assert_eq!(request(server.addr, "PUT", "/big", &big).await.0, 413);
    assert_eq!(request(server.addr, "POST", "/x", b"").await.0, 405);
    assert_eq!(
        request(server.addr, "DELETE", &format!("/cas/{right}"), b"")
            .await
            .0,
        204
    );
    assert_eq!(
        request(server.addr, "GET", &format!("/cas/{right}"), b"")
            .await
            .0,
        404
    );
    assert_eq!(status(&server).refused, 3);
}

/// Bazel's HTTP cache (bazel.build/remote/caching, "HTTP caching protocol"): action results
/// under `/ac/`, outputs under `/cas/` named by their SHA-256, both below the URL's path
/// (the instance), GET for a lookup and PUT for an upload, 404 for a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bazel_action_results_and_outputs_round_trip_through_the_mirrors() {
    let (mirror_dir, host_a, host_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (state, _) = watch::channel(None);
    let output = b"\x7fELF an output file".to_vec();
    let output_digest = Digest::sha256(&output);
    let action_digest = Digest::sha256(b"an action");
    let action_result = b"\x0a\x20a serialized ActionResult naming the output".to_vec();
    let cas = format!("/bazel/cas/{output_digest}");
    let ac = format!("/bazel/ac/{action_digest}");

    let first = start(
        host_a.path(),
        vec![file_mirror("m", mirror_dir.path())],
        &state,
    )
    .await;
    assert_eq!(request(first.addr, "GET", &ac, b"").await.0, 404);
    assert_eq!(request(first.addr, "PUT", &cas, &output).await.0, 201);
    // A large upload may ask to continue first; the server says so, then takes the body.
    let mut stream = tokio::net::TcpStream::connect(first.addr).await.unwrap();
    let head = format!(
        "PUT {ac} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        action_result.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(&action_result).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("201 Created"));
    until("the write-back", || stored_on(mirror_dir.path()) == 2).await;

    let second = start(
        host_b.path(),
        vec![file_mirror("m", mirror_dir.path())],
        &state,
    )
    .await;
    assert_eq!(
        request(second.addr, "GET", &ac, b"").await,
        (200, action_result)
    );
    assert_eq!(request(second.addr, "GET", &cas, b"").await, (200, output));
    let other = format!("/bazel/cas/{}", Digest::sha256(b"never stored"));
    assert_eq!(request(second.addr, "GET", &other, b"").await.0, 404);
    // Another instance is another cache.
    assert_eq!(
        request(
            second.addr,
            "GET",
            &format!("/other/ac/{action_digest}"),
            b""
        )
        .await
        .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_on_the_best_mirror_is_the_answer_and_costs_one_request() {
    let (a, b, host) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (state, _) = watch::channel(None);
    // Only the second mirror has it (a write-back to the first still queued elsewhere).
    let key = crate::EntryKey::from_path("/ccache/lagging").unwrap();
    place(b.path(), &key, &key.seal(b"x").unwrap());
    let server = start(
        host.path(),
        vec![file_mirror("a", a.path()), file_mirror("b", b.path())],
        &state,
    )
    .await;
    assert_eq!(
        request(server.addr, "GET", "/ccache/lagging", b"").await.0,
        404
    );
    let figures = status(&server);
    assert_eq!((figures.mirrors[0].asked, figures.mirrors[1].asked), (1, 0));
    assert_eq!((figures.misses, figures.deadline_misses), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_store_stays_under_its_cap_and_what_went_is_still_on_the_mirror() {
    let (a, host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, _) = watch::channel(None);
    let server = start(host.path(), vec![file_mirror("a", a.path())], &state).await;
    // 20 entries of 8 KiB against the tests' 64 KiB cap.
    let content = vec![7u8; 8 << 10];
    for i in 0..20 {
        let path = format!("/ccache/e{i}");
        assert_eq!(request(server.addr, "PUT", &path, &content).await.0, 201);
        until("the write-back", || stored_on(a.path()) == i + 1).await;
    }
    until("eviction", || status(&server).local_bytes <= 64 << 10).await;
    let figures = status(&server);
    assert!(figures.evicted_entries >= 12, "{figures:?}");
    // The first entry left this host, and comes back from the mirror.
    assert_eq!(
        request(server.addr, "GET", "/ccache/e0", b"").await,
        (200, content)
    );
    assert_eq!(status(&server).mirror_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_holds_while_the_path_is_degraded_and_flushes_when_it_is_up() {
    let (a, host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, _) = watch::channel(state_with("a", Health::Degraded));
    let server = start(host.path(), vec![file_mirror("a", a.path())], &state).await;
    assert_eq!(
        request(server.addr, "PUT", "/ccache/held", b"z").await.0,
        201
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_on(a.path()), 0, "written while Degraded");
    state.send_replace(state_with("a", Health::Up));
    until("the held entry to reach the mirror", || {
        stored_on(a.path()) == 1
    })
    .await;
}

/// A mirror's answer is read only once the memory budget has room for it: lookups answered
/// with large entries wait instead of each taking memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrors_answer_waits_for_room_in_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::EntryKey::from_path("/ccache/large").unwrap();
    let content = vec![7u8; 3 << 20];
    place(dir.path(), &key, &key.seal(&content).unwrap());
    let (state, _) = watch::channel(None);
    let lookup = Lookup {
        mirrors: vec![file_mirror("a", dir.path())],
        verdicts: Verdicts::from_channel(state.subscribe()),
        board: Scoreboard::in_memory(),
        hedge: Duration::from_secs(5),
        deadline: Duration::from_secs(30),
        max_entry: 4 << 20,
    };
    let budget = crate::budget::Budget::of_mib(5);
    // Another entry holds 3 MiB of the 5: this one's 4 do not fit until it is gone.
    let held = budget.room(3 << 20).await;
    let stats = crate::Stats::new(["a".to_string()]);
    let found = tokio::spawn({
        let budget = budget.clone();
        async move { lookup.find(&key, &stats, &budget).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!found.is_finished(), "read while the budget had no room");
    drop(held);
    match found.await.unwrap() {
        crate::Found::Hit { content: got, .. } => assert_eq!(got, content),
        other => panic!("expected a hit, got {other:?}"),
    }
}
