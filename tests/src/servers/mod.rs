//! Real servers the transfer tests and benchmarks use as mirrors, started and stopped by them.

pub mod azurite;
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
