//! Background traffic for the bench's rounds: a UDP beacon that keeps a link's receive side
//! busy, a TCP server that accepts any number of connections, a paced flow that reconnects
//! through faults (unlike [`super::PacedFlow`], which measures one connection), and a bulk
//! sender for throughput. Every loop is bounded by its stop flag and a
//! deadline.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{pause_until, read_step, write_step, Pacer};
use crate::netns::NetNs;

use crate::worker::Worker;

/// How long a blocking socket call may take before the stop flag is looked at again.
const STEP: Duration = Duration::from_millis(100);

/// One small UDP datagram from `from` to `to` every `every` (a `ping -i 0.005` stand-in that
/// needs no reply), with a sink in `to`'s namespace that reads and drops them. Send errors
/// (the link is down) are ignored: the beacon resumes when the link does.
pub struct Beacon {
    _sender: Worker<()>,
    _sink: Worker<()>,
}

impl Beacon {
    pub fn start(
        from: &NetNs,
        to_ns: &NetNs,
        to: SocketAddr,
        every: Duration,
        limit: Duration,
    ) -> Self {
        let sink = Worker::spawn_in(to_ns, "beacon-sink", move |stop| {
            let socket = UdpSocket::bind(to).unwrap_or_else(|e| panic!("binding UDP {to}: {e}"));
            socket.set_read_timeout(Some(STEP)).expect("read timeout");
            let deadline = Instant::now() + limit;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = socket.recv(&mut buf);
            }
        });
        let sender = Worker::spawn_in(from, "beacon", move |stop| {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
            let deadline = Instant::now() + limit;
            let mut pacer = Pacer::new(every);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = socket.send_to(b"netwatch-bench beacon", to);
                pacer.wait(stop);
            }
        });
        Beacon {
            _sender: sender,
            _sink: sink,
        }
    }
}

/// A TCP server that accepts every connection and reads each to its end, counting bytes.
pub struct Server {
    pub received: Arc<AtomicU64>,
    _worker: Worker<()>,
}

impl Server {
    /// Listens on `addr` in `ns`; returns once it listens.
    pub fn start(ns: &NetNs, addr: SocketAddr, limit: Duration) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let worker = Worker::spawn_in(ns, "tcp-server", move |stop| {
            let listener = match TcpListener::bind(addr) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("binding {addr}: {e}")));
                    return;
                }
            };
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
            let _ = ready_tx.send(Ok(()));
            let deadline = Instant::now() + limit;
            std::thread::scope(|scope| {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let counter = &counter;
                            scope.spawn(move || drain(stream, counter, stop, deadline));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the TCP server did not start: {e}"),
            Err(_) => panic!("the TCP server at {addr} did not start listening within 10 s"),
        }
        Server {
            received,
            _worker: worker,
        }
    }
}

fn drain(mut stream: TcpStream, counter: &AtomicU64, stop: &AtomicBool, deadline: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(STEP));
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Some(n) = read_step(&mut stream, &mut buf) else {
            break;
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A TCP flow from `client` to `target` at a steady pace (`chunk` bytes every `every`),
/// reconnecting if the connection fails, until stopped or `limit` passes.
pub struct ReconnectingFlow {
    _worker: Worker<()>,
}

impl ReconnectingFlow {
    pub fn start(
        client: &NetNs,
        target: SocketAddr,
        chunk: usize,
        every: Duration,
        limit: Duration,
    ) -> Self {
        let worker = Worker::spawn_in(client, "paced-flow", move |stop| {
            let deadline = Instant::now() + limit;
            let data = vec![0x6e_u8; chunk];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                else {
                    pause_until(Instant::now() + STEP, stop);
                    continue;
                };
                // Each write leaves at once instead of waiting for the previous one's ACK.
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(STEP));
                let mut pacer = Pacer::new(every);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if write_step(&mut stream, &data).is_none() {
                        break;
                    }
                    pacer.wait(stop);
                }
                // Reset rather than close: the next flow starts clean, without this one's
                // unsent backlog being retransmitted in the background.
                reset_on_close(&stream);
            }
        });
        ReconnectingFlow { _worker: worker }
    }
}

/// Sends as fast as TCP allows from `client` to `target` until stopped or `limit` passes.
pub struct Bulk {
    _worker: Worker<()>,
}

impl Bulk {
    pub fn start(client: &NetNs, target: SocketAddr, limit: Duration) -> Self {
        let worker = Worker::spawn_in(client, "bulk", move |stop| {
            let deadline = Instant::now() + limit;
            let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(3)) else {
                return;
            };
            let _ = stream.set_write_timeout(Some(STEP));
            let data = vec![0x6e_u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if write_step(&mut stream, &data).is_none() {
                    break;
                }
            }
        });
        Bulk { _worker: worker }
    }
}

/// Bytes per second received by `server` over `span`, measured after `warmup`, from a bulk
/// sender in `client`.
pub fn throughput(
    client: &NetNs,
    server: &Server,
    target: SocketAddr,
    warmup: Duration,
    span: Duration,
) -> f64 {
    let bulk = Bulk::start(client, target, warmup + span + Duration::from_secs(2));
    std::thread::sleep(warmup);
    let (start, from) = (Instant::now(), server.received.load(Ordering::Relaxed));
    std::thread::sleep(span);
    let (elapsed, to) = (start.elapsed(), server.received.load(Ordering::Relaxed));
    drop(bulk);
    (to - from) as f64 / elapsed.as_secs_f64()
}

/// Makes closing `stream` send a RST and drop unsent data (SO_LINGER with a zero timeout).
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value is a linger struct of the size given, on an open socket.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
