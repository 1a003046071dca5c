//! netwatch tells programs on a Linux host, within milliseconds, whether the network they
//! depend on is Up, Degraded or Down.
//!
//! Data flows one way: the kernel programs ([`ebpf`]) and rtnetlink ([`netlink`]) produce
//! observations, which the [`agent`] combines and reports.

pub mod accounts;
pub mod agent;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod ebpf;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod retry;
pub mod server;
pub mod state;
pub mod transfer;
