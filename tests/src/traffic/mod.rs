//! Bounded traffic between two namespaces: a TCP bulk transfer, ping, a paced flow that
//! measures one connection; and the bench's background traffic ([`background`]).
//!
//! Every loop here stops by itself, after a byte count or a deadline, whichever comes first.

pub mod background;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

/// What a bulk transfer achieved.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Bytes the client wrote.
    pub sent: u64,
    /// Bytes the server read before end of stream or its deadline.
    pub received: u64,
    /// Whether `sent` reached the requested size before the deadline.
    pub complete: bool,
}

/// Sends up to `bytes` over TCP from a client in `client_ns` to a server in `server_ns` that
/// listens on `server_addr:port`, stopping at `limit` at the latest. Returns once both sides
/// are done and the connection is closed.
pub fn tcp_bulk(
    client_ns: &NetNs,
    server_ns: &NetNs,
    server_addr: IpAddr,
    port: u16,
    bytes: u64,
    limit: Duration,
) -> Transfer {
    let deadline = Instant::now() + limit;
    let target = SocketAddr::new(server_addr, port);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let server = scope.spawn(|| server_ns.run(move || serve(target, deadline, ready_tx)));
        ready_rx
            .recv_timeout(limit)
            .expect("the TCP server in the server namespace did not start listening");
        let sent = client_ns.run(|| send(target, bytes, deadline));
        let received = match server.join() {
            Ok(received) => received,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Transfer {
            sent,
            received,
            complete: sent == bytes,
        }
    })
}

/// Accepts one connection and reads it to its end or to the deadline; returns the bytes read.
fn serve(addr: SocketAddr, deadline: Instant, ready: mpsc::Sender<()>) -> u64 {
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding the server to {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    ready.send(()).expect("the client side is waiting");
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no client connected to {addr} before the deadline"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accepting on {addr}: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading from the client at {addr}: {e}"),
        }
    }
    received
}

/// Connects and writes up to `bytes`, then closes; returns the bytes written.
fn send(addr: SocketAddr, bytes: u64, deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut stream = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1)))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let chunk = vec![0x6e_u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < bytes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream
            .set_write_timeout(Some(left))
            .expect("set a write timeout");
        let n = chunk.len().min((bytes - sent) as usize);
        match stream.write(&chunk[..n]) {
            Ok(written) => sent += written as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("writing to {addr}: {e}"),
        }
    }
    // A clean close sends FIN after the data, so the server sees the end of the stream.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    sent
}

/// `ping -c count -i 0.2 addr` from `ns`, bounded to `count` packets and a deadline; panics
/// unless every echo was answered.
pub fn ping(ns: &NetNs, addr: IpAddr, count: u32) {
    // -w: overall deadline in seconds (0.2 s apart, so count + 5 s is ample); -W: per-reply wait.
    let deadline = (count + 5).to_string();
    let count = count.to_string();
    let addr = addr.to_string();
    let output = ns.exec(
        "ping",
        &[
            "-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", "-w", &deadline, &addr,
        ],
    );
    crate::netns::assert_success(ns.name(), "ping", &[&addr], &output);
}

/// `ping` running in the background: bounded by its count and deadline, and killed on drop.
pub struct BackgroundPing {
    child: std::process::Child,
}

impl BackgroundPing {
    /// `ping -c count -i interval -w deadline addr` from `ns`. Its output is discarded and
    /// failures are ignored: it only provides traffic (it may run while the link is down).
    pub fn start(ns: &NetNs, addr: IpAddr, interval: &str, count: u32, deadline: Duration) -> Self {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns.name(), "ping", "-n", "-q"])
            .args(["-c", &count.to_string(), "-i", interval])
            .args(["-w", &deadline.as_secs().max(1).to_string()])
            .arg(addr.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ping in {}: {e}", ns.name()));
        BackgroundPing { child }
    }

    /// Stops the ping (if it is still running).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        // `ip netns exec` execs ping, so the child's pid is ping's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BackgroundPing {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The pace and bounds of a [`PacedFlow`].
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Bytes per write.
    pub chunk: usize,
    /// Time between writes.
    pub every: Duration,
    /// The flow stops after this many bytes...
    pub max_bytes: u64,
    /// ...or this long after it started, whichever comes first.
    pub max_time: Duration,
}

impl Default for Pace {
    /// 16 KiB every 10 ms (1.6 MB/s): a steady stream of packets that costs little CPU.
    fn default() -> Self {
        Pace {
            chunk: 16 * 1024,
            every: Duration::from_millis(10),
            max_bytes: 64 * 1024 * 1024,
            max_time: Duration::from_secs(40),
        }
    }
}

/// What a paced flow achieved.
#[derive(Clone, Copy, Debug)]
pub struct FlowReport {
    /// Bytes the client's writes accepted.
    pub sent: u64,
    /// Bytes the server read.
    pub received: u64,
}

/// A TCP flow at a steady pace from a client in one namespace to a server in another, in the
/// background until stopped, its byte count reached or its time up. Writes and reads time
/// out quickly, so the flow survives a blackhole and stops promptly.
pub struct PacedFlow {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// When data reached the server after a pause (the first read, and each read that
    /// follows 200 ms or more without data).
    resumed: Resumptions,
    client: Option<std::thread::JoinHandle<u64>>,
    server: Option<std::thread::JoinHandle<u64>>,
}

impl PacedFlow {
    /// Starts a server on `server_addr:port` in `server_ns` and a client in `client_ns`;
    /// returns once they are connected.
    pub fn start(
        client_ns: &NetNs,
        server_ns: &NetNs,
        server_addr: IpAddr,
        port: u16,
        pace: Pace,
    ) -> Self {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;

        let deadline = Instant::now() + pace.max_time;
        let target = SocketAddr::new(server_addr, port);
        let stop = Arc::new(AtomicBool::new(false));
        let (listening_tx, listening_rx) = mpsc::channel::<()>();
        let server_stop = Arc::clone(&stop);
        let resumed = Resumptions::default();
        let server_resumed = resumed.clone();
        let server = server_ns.spawn("flow-server", move || {
            serve_paced(
                target,
                deadline,
                &server_stop,
                listening_tx,
                &server_resumed,
            )
        });
        if listening_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            match server.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => panic!("the flow's server at {target} did not start listening"),
            }
        }
        let (connected_tx, connected_rx) = mpsc::channel::<Result<(), String>>();
        let client_stop = Arc::clone(&stop);
        let client = client_ns.spawn("flow-client", move || {
            send_paced(target, pace, deadline, &client_stop, connected_tx)
        });
        let mut flow = PacedFlow {
            stop,
            resumed,
            client: Some(client),
            server: Some(server),
        };
        match connected_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => flow,
            Ok(Err(e)) => {
                flow.finish();
                panic!("the flow's client could not connect to {target}: {e}")
            }
            Err(_) => {
                flow.finish();
                panic!("the flow's client did not connect to {target} within 10 s")
            }
        }
    }

    /// The first time data reached the server after a pause that ended after `since`: when
    /// a path that was cut is seen to work again.
    pub fn resumed_after(&self, since: Instant) -> Option<Instant> {
        self.resumed.first_after(since)
    }

    /// Whether the client is still sending (false once stopped, done or failed).
    pub fn running(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_finished())
    }

    /// Stops both sides and reports what went through.
    pub fn stop(mut self) -> FlowReport {
        self.finish()
    }

    fn finish(&mut self) -> FlowReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let join = |handle: Option<std::thread::JoinHandle<u64>>| {
            handle.map_or(0, |h| match h.join() {
                Ok(bytes) => bytes,
                Err(panic) if !std::thread::panicking() => std::panic::resume_unwind(panic),
                Err(_) => 0,
            })
        };
        let sent = join(self.client.take());
        let received = join(self.server.take());
        FlowReport { sent, received }
    }
}

impl Drop for PacedFlow {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How long one blocking read or write of a paced flow may take before the stop flag and
/// the deadline are looked at again.
const STEP: Duration = Duration::from_millis(100);

/// When a flow's data resumed after pauses.
#[derive(Clone, Default)]
struct Resumptions(std::sync::Arc<std::sync::Mutex<Vec<Instant>>>);

impl Resumptions {
    /// The gap without data after which data arriving is a resumption.
    const GAP: Duration = Duration::from_millis(200);

    fn note(&self, last: &mut Option<Instant>) {
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= Self::GAP) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(now);
        }
        *last = Some(now);
    }

    fn first_after(&self, since: Instant) -> Option<Instant> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().copied().find(|at| *at >= since)
    }
}

fn serve_paced(
    addr: SocketAddr,
    deadline: Instant,
    stop: &std::sync::atomic::AtomicBool,
    listening: mpsc::Sender<()>,
    resumed: &Resumptions,
) -> u64 {
    use std::sync::atomic::Ordering;
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding the server to {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let _ = listening.send(());
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return 0;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accepting on {addr}: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    stream.set_read_timeout(Some(STEP)).expect("read timeout");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    let mut last_data = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // The end of the stream or a reset (the client gave up) ends the flow; the test
        // judges by its own means.
        let Some(n) = read_step(&mut stream, &mut buffer) else {
            break;
        };
        if n > 0 {
            resumed.note(&mut last_data);
        }
        received += n as u64;
    }
    received
}

fn send_paced(
    addr: SocketAddr,
    pace: Pace,
    deadline: Instant,
    stop: &std::sync::atomic::AtomicBool,
    connected: mpsc::Sender<Result<(), String>>,
) -> u64 {
    use std::sync::atomic::Ordering;
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => stream,
        Err(e) => {
            let _ = connected.send(Err(e.to_string()));
            return 0;
        }
    };
    // Each write leaves at once instead of waiting for the previous one's ACK (Nagle).
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream.set_write_timeout(Some(STEP)).expect("write timeout");
    let _ = connected.send(Ok(()));
    let chunk = vec![0x6e_u8; pace.chunk];
    let mut sent = 0u64;
    let mut pacer = Pacer::new(pace.every);
    while sent < pace.max_bytes && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let n = chunk.len().min((pace.max_bytes - sent) as usize);
        let Some(written) = write_step(&mut stream, &chunk[..n]) else {
            break;
        };
        sent += written as u64;
        pacer.wait(stop);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    sent
}

// The steps below are shared with the bench's load generators (tests/src/bench/load.rs).

/// Whether a failed read or write only timed out or was interrupted (an idle sender, a full
/// send buffer under loss or a blackhole): the flow goes on and tries again on its next step.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// One read of a flow that must survive faults: the bytes read (0 when the read only timed
/// out), or `None` once the stream has ended or failed.
pub fn read_step(stream: &mut TcpStream, buffer: &mut [u8]) -> Option<usize> {
    match stream.read(buffer) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e) if transient(&e) => Some(0),
        Err(_) => None,
    }
}

/// One write of a flow that must survive faults: the bytes written (0 when the write only
/// timed out), or `None` once the connection has failed.
pub fn write_step(stream: &mut TcpStream, data: &[u8]) -> Option<usize> {
    match stream.write(data) {
        Ok(n) => Some(n),
        Err(e) if transient(&e) => Some(0),
        Err(_) => None,
    }
}

/// Keeps a flow's writes `every` apart. After a late write the schedule restarts from then
/// instead of bursting to catch up.
pub struct Pacer {
    next: Instant,
    every: Duration,
}

impl Pacer {
    /// A schedule whose first step is now.
    pub fn new(every: Duration) -> Self {
        Pacer {
            next: Instant::now(),
            every,
        }
    }

    /// Sleeps until the next step is due, waking early if `stop` is set.
    pub fn wait(&mut self, stop: &std::sync::atomic::AtomicBool) {
        self.next += self.every;
        let now = Instant::now();
        if self.next > now {
            pause_until(self.next, stop);
        } else {
            self.next = now;
        }
    }
}

/// Sleeps until `next`, waking early if `stop` is set.
pub fn pause_until(next: Instant, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            return;
        }
        std::thread::sleep((next - now).min(Duration::from_millis(50)));
    }
}
