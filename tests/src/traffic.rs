//! Bounded traffic between two namespaces: a TCP bulk transfer and ping.
//!
//! Every loop here stops by itself, after a byte count or a deadline, whichever comes first.

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
