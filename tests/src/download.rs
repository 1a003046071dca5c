//! A download through an outage: a throttled HTTP server with Range support in one
//! namespace, a resumable client in the other driven by `netwatch_client::retry`, and the link cut
//! for a while mid-transfer. Used by the retry test and the benchmark.
//!
//! The server is a test fixture, deliberately small: GET of one generated blob, `Range:
//! bytes=N-`, a paced body. What is under test is the client's retry, not HTTP.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use netwatch_client::{
    retry::{AgentSource, RetryError, RetryPolicy, RetryReport, Retryer},
    state::Subject,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::{netns::NetNs, topology::set_link_up};

/// How long the client waits for a connect or for more bytes before calling it a failure.
pub const STALL: Duration = Duration::from_secs(1);
/// Body pacing: chunk size and pause, about 8 MB/s.
const CHUNK: usize = 64 * 1024;
const CHUNK_PAUSE: Duration = Duration::from_millis(8);

/// The blob's byte at `offset`: a pattern the client can check.
pub fn blob_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(31) % 251) as u8
}

/// A throttled HTTP server for one blob, on a thread in `ns`; stops when dropped.
pub struct BlobServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlobServer {
    pub fn start(ns: &NetNs, addr: SocketAddr, size: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = ns.run(|| TcpListener::bind(addr).expect("bind the blob server"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let flag = Arc::clone(&flag);
                        std::thread::spawn(move || serve(stream, size, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, size: u64, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut start = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some(range) = header.strip_prefix("Range: bytes=") {
            start = range.trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let start = start.min(size);
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{size}\r\nConnection: close\r\n\r\n",
        size - start,
        size.saturating_sub(1)
    );
    let mut stream = stream;
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut offset = start;
    while offset < size && !stop.load(Ordering::Relaxed) {
        let end = (offset + CHUNK as u64).min(size);
        let chunk: Vec<u8> = (offset..end).map(blob_byte).collect();
        if stream.write_all(&chunk).is_err() {
            return;
        }
        offset = end;
        std::thread::sleep(CHUNK_PAUSE);
    }
}

/// One attempt: fetch from `have.len()` on, appending to `have`. Fails on a stall.
async fn fetch_rest(addr: SocketAddr, have: &mut Vec<u8>, size: u64) -> std::io::Result<()> {
    let stalled = || std::io::Error::new(std::io::ErrorKind::TimedOut, "stalled");
    let mut stream = tokio::time::timeout(STALL, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| stalled())??;
    let request = format!(
        "GET /blob HTTP/1.1\r\nHost: {addr}\r\nRange: bytes={}-\r\nConnection: close\r\n\r\n",
        have.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(STALL, reader.read_line(&mut line))
            .await
            .map_err(|_| stalled())??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.trim_end().is_empty() {
            break;
        }
    }
    let mut buf = vec![0u8; CHUNK];
    while (have.len() as u64) < size {
        let n = tokio::time::timeout(STALL, reader.read(&mut buf))
            .await
            .map_err(|_| stalled())??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// How a download through an outage went.
#[derive(Debug)]
pub struct DownloadOutcome {
    /// The report of a download that completed, or of one that gave up.
    pub report: RetryReport,
    pub completed: bool,
    /// Every byte matched the blob (only meaningful when completed).
    pub verified: bool,
    /// Why it gave up, if it did.
    pub error: Option<String>,
    /// CLOCK_MONOTONIC when the link came back.
    pub link_up_ns: u64,
}

impl DownloadOutcome {
    /// From the agent reporting Up to the retry starting (network-aware runs only).
    pub fn resume_after_up(&self) -> Option<Duration> {
        let resumed = self.report.resumed.as_ref()?;
        Some(Duration::from_nanos(
            resumed
                .monotonic_ns
                .saturating_sub(resumed.verdict.since_ns),
        ))
    }

    /// From the link coming back to the retry starting.
    pub fn resume_after_link_up(&self) -> Option<Duration> {
        let resumed = self.report.resumed.as_ref()?;
        Some(Duration::from_nanos(
            resumed.monotonic_ns.saturating_sub(self.link_up_ns),
        ))
    }
}

/// Downloads `size` bytes from `server` (in the namespace of `cut_ns`'s peer) from a thread
/// in `client_ns`, while `cut_ns`'s interface `cut_index` goes down `after` the start for
/// `outage`. With `agent_socket`, the retry is network-aware (host verdict); without, it is
/// plain backoff.
#[allow(clippy::too_many_arguments)]
pub fn download_through_outage(
    client_ns: &NetNs,
    server: SocketAddr,
    size: u64,
    cut_ns: &NetNs,
    cut_index: u32,
    after: Duration,
    outage: Duration,
    agent_socket: Option<&std::path::Path>,
    policy: RetryPolicy,
) -> DownloadOutcome {
    let cutter = {
        let ns_path = cut_ns.open();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: the file is an open namespace; setns only moves this thread.
            assert_eq!(
                unsafe { libc::setns(ns_path.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            std::thread::sleep(after);
            crate::netns::block_on_here(set_link_up(cut_index, false));
            std::thread::sleep(outage);
            crate::netns::block_on_here(set_link_up(cut_index, true));
            netwatch_client::clock::monotonic_ns()
        })
    };
    let watching = agent_socket.map(|socket| (socket, Subject::Host));
    let (result, verified) = download(client_ns, server, size, watching, policy);
    let link_up_ns = cutter.join().expect("the link cutter thread");
    match result {
        Ok(((), report)) => DownloadOutcome {
            report,
            completed: true,
            verified,
            error: None,
            link_up_ns,
        },
        Err(RetryError { report, reason, .. }) => DownloadOutcome {
            report,
            completed: false,
            verified: false,
            error: Some(format!("{reason:?}")),
            link_up_ns,
        },
    }
}

/// Downloads `size` bytes from `server` from `client_ns`, retrying with `policy`, network
/// aware if `watching` names the agent's socket and whose verdict to read. The run's result,
/// and whether every byte matched the blob.
pub fn download(
    client_ns: &NetNs,
    server: SocketAddr,
    size: u64,
    watching: Option<(&std::path::Path, Subject)>,
    policy: RetryPolicy,
) -> (Result<((), RetryReport), RetryError<std::io::Error>>, bool) {
    let watching = watching.map(|(socket, subject)| (socket.to_path_buf(), subject));
    let (result, have) = client_ns.block_on(async move {
        let mut retryer = Retryer::new(policy).with_seed(7);
        if let Some((socket, subject)) = watching {
            retryer = retryer.with_state(AgentSource::new(socket), subject);
        }
        let have = tokio::sync::Mutex::new(Vec::with_capacity(size as usize));
        let result = retryer
            .run(|_attempt| async {
                let mut buf = have.lock().await;
                fetch_rest(server, &mut buf, size).await
            })
            .await;
        (result, have.into_inner())
    });
    let verified = have.len() as u64 == size
        && have
            .iter()
            .enumerate()
            .all(|(i, b)| *b == blob_byte(i as u64));
    (result, verified)
}

/// The original design's comparison, for real: a pair of namespaces (B downloads from a blob
/// server in A, with the agent watching B), then the same download twice through the same
/// cut of A's end, `outage` long, `after` into the transfer: network-aware (host verdict
/// from the agent), then plain backoff. Returns (network-aware, plain).
pub fn outage_comparison(
    size: u64,
    after: Duration,
    outage: Duration,
) -> (DownloadOutcome, DownloadOutcome) {
    let pair = crate::topology::Pair::new();
    pair.default_route_via_a();
    let server = BlobServer::start(&pair.a, SocketAddr::new(pair.a_v4.into(), 8080), size);
    let agent = crate::agent::Agent::start_with(&pair.b, &["--metrics", "off"], None);
    agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
    let run = |socket| {
        download_through_outage(
            &pair.b,
            server.addr,
            size,
            &pair.a,
            pair.a_index,
            after,
            outage,
            socket,
            transfer_policy(),
        )
    };
    let aware = run(Some(agent.socket()));
    let plain = run(None);
    (aware, plain)
}

/// The policy both runs use: a few attempts, short backoff, as a transfer tool would.
pub fn transfer_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        deadline: Some(Duration::from_secs(120)),
        ..RetryPolicy::default()
    }
}

/// Wall time, for people.
pub fn since(start: Instant) -> Duration {
    start.elapsed()
}
