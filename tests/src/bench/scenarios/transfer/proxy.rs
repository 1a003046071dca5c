//! A TCP proxy that caps each connection's downstream (server to client) at a fixed rate:
//! the per-connection limit of a shaping CDN or middlebox. nginx's `limit_rate` is per
//! *request* and lets the first second's worth of each response through at once
//! (ngx_http_write_filter_module.c: `limit = limit_rate * (ngx_time() - start_sec + 1) -
//! sent`), so it never slows requests for chunks smaller than a second's worth; this proxy
//! paces every byte of a connection, across keep-alive requests.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use anyhow::{Context as _, Result};

/// Bytes written per step: the pacing's granularity.
const STEP: usize = 16 * 1024;

/// Listens in a namespace and hands each connection, with a new one to the upstream, to a
/// relay; stops accepting on drop (open connections end with their peers).
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(
        ns: &NetNs,
        listen: SocketAddr,
        upstream: SocketAddr,
        relay: impl Fn(TcpStream, TcpStream) + Send + 'static,
    ) -> Result<Forwarder> {
        let listener = ns
            .run(|| TcpListener::bind(listen))
            .with_context(|| format!("binding a proxy to {listen}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        // Sockets keep the namespace they were made in, so the upstream connections are
        // made from a thread inside it.
        let accept = ns.spawn("proxy", move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if let Ok(server) = TcpStream::connect(upstream) {
                            relay(client, server);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(Forwarder {
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A proxy whose answers are capped per connection.
pub struct CappedProxy;

impl CappedProxy {
    /// Forwards `listen` to `upstream`, each connection's answers capped at `bytes_per_sec`.
    pub fn start(
        ns: &NetNs,
        listen: SocketAddr,
        upstream: SocketAddr,
        bytes_per_sec: u64,
    ) -> Result<Forwarder> {
        Forwarder::start(ns, listen, upstream, move |client, server| {
            relay(client, server, bytes_per_sec)
        })
    }
}

/// Copies client to server as fast as it comes, server to client paced.
fn relay(client: TcpStream, server: TcpStream, bytes_per_sec: u64) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut server_in, mut client_out) = (server, client);
        let _ = paced_copy(&mut server_in, &mut client_out, bytes_per_sec);
        let _ = client_out.shutdown(Shutdown::Write);
    });
}

/// A token bucket one step deep: an idle connection saves no credit beyond one step, so
/// a keep-alive connection is held to the rate from one request to the next.
fn paced_copy(from: &mut TcpStream, to: &mut TcpStream, bytes_per_sec: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; STEP];
    let per_byte = Duration::from_secs(1).as_secs_f64() / bytes_per_sec as f64;
    let burst = Duration::from_secs_f64(per_byte * STEP as f64);
    let mut next = Instant::now();
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        next = next.max(now.checked_sub(burst).unwrap_or(now));
        if next > now {
            std::thread::sleep(next - now);
        }
        to.write_all(&buf[..n])?;
        next += Duration::from_secs_f64(per_byte * n as f64);
    }
}
