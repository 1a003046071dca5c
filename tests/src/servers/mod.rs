//! Real servers the transfer tests and benchmarks use as mirrors, started and stopped by them.

pub mod azurite;
pub mod fake_gcs;
pub mod hostile;
pub mod nginx;
pub mod seaweed;
pub mod sshd;

use std::net::{SocketAddr, TcpListener};

/// A loopback address with a port free a moment ago, for a server that cannot report the port
/// the kernel gave it. (In a namespace of the test's own, any fixed port is free.)
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// `f`, run in `ns` when there is one.
pub(crate) fn in_namespace<T: Send>(
    ns: Option<&crate::netns::NetNs>,
    f: impl FnOnce() -> T + Send,
) -> T {
    match ns {
        Some(ns) => ns.run(f),
        None => f(),
    }
}
