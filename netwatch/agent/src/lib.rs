//! The privileged host agent of netwatch: it loads the kernel programs ([`ebpf`]), follows
//! rtnetlink ([`netlink`]), turns what both show into observations and judges them
//! ([`state`]: the classifier is pure, no I/O and no clock of its own), and serves the
//! verdict on a Unix socket ([`server`]) and as Prometheus metrics ([`metrics`]). The
//! long-running process itself is [`daemon`].
//!
//! The kernel programs' object is not built here: the `netwatch` binary embeds it and hands
//! it to [`daemon::run`], so this crate and its tests build with stable Rust alone.

pub mod daemon;
pub mod ebpf;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod server;
pub mod state;

// What the agent shares with its clients, under the names the agent's code uses.
pub use netwatch_client::{accounts, clock};

pub use daemon::{
    run, AgentConfig, AgentError, EndpointAddress, EndpointSpec, MetricsListen, ProbeSpec, RunAs,
};
