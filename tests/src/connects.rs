//! Connections opened and closed in a loop, and a server that accepts them and can close
//! its port: the traffic of clients that keep trying, and a service that goes away.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

/// Accepts connections on `addr` in a namespace and closes each at once; closing the
/// listener (drop) makes further connects get a RST. Bounded by a deadline.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    pub fn start(ns: &NetNs, addr: SocketAddr, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = ns.spawn("acceptor", move || {
            let listener = TcpListener::bind(addr)
                .unwrap_or_else(|e| panic!("binding the acceptor to {addr}: {e}"));
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
            let _ = ready_tx.send(());
            let deadline = Instant::now() + limit;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the acceptor did not start listening");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the port: connects get a RST from now on.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Connects to `target` every `every` (closing each connection at once), until dropped or
/// its time is up: a client that keeps trying.
pub struct ConnectLoop {
    stop: Arc<AtomicBool>,
    /// Connects that succeeded and that failed so far.
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ConnectLoop {
    pub fn start(ns: &NetNs, target: SocketAddr, every: Duration, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (flag, oks, fails) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let thread = ns.spawn("connect-loop", move || {
            let deadline = Instant::now() + limit;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                    Ok(_) => oks.fetch_add(1, Ordering::Relaxed),
                    Err(_) => fails.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }
}

impl Drop for ConnectLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
