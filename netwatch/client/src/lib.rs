//! The part of netwatch a program that depends on the network uses: the verdict (Up,
//! Degraded, Down or Unknown for the host, each link and each configured endpoint), the
//! agent's socket protocol and a client for it, and network-aware retry, which pauses while
//! the network is Down without spending attempts and resumes the moment it is back.
//!
//! It builds with stable Rust alone and pulls in nothing of the agent (no eBPF, no netlink)
//! or of the transfer tool (no object store, no TLS). A build tool depends on this crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), netwatch_client::ClientError> {
//! use netwatch_client::{paths, Client};
//! let mut client = Client::connect(&paths::default_socket_path()).await?;
//! let state = client.get().await?;
//! println!("the host is {}", state.host.health);
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod client;
pub mod clock;
pub mod paths;
pub mod protocol;
pub mod retry;
pub mod state;

pub use client::{Client, ClientError};
