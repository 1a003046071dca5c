//! Prometheus metrics, on a loopback address or, behind TLS and authentication, off it:
//! per-interface counters, retransmits, verdicts,
//! and what the agent itself costs.
//!
//! The text format is written by hand (`text.rs`): the crates for it bring a registry and
//! locks, of no use to an exporter that renders one snapshot per scrape.

mod access;
mod auth;
mod render;
mod server;
#[cfg(test)]
mod tests;
mod text;
mod tls;
mod web_config;

use crate::ebpf::KernelStats;
pub use crate::ebpf::ProgramCost;

pub use access::Access;
pub use render::render;
pub use server::{bind, serve, MetricsError};
pub use text::CONTENT_TYPE;
pub use web_config::{WebConfig, WebConfigError};

/// What the agent costs and what it lost, refreshed by the agent for the exporter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentCosts {
    /// Per kernel program, from the kernel's own accounting (BPF_ENABLE_STATS, held by the
    /// agent while it runs).
    pub programs: Vec<ProgramCost>,
    /// Whether the kernel is accounting run time (if not, `programs` run figures are 0).
    pub bpf_stats_enabled: bool,
    /// Times the netlink event socket overran (each followed by a full re-read).
    pub netlink_overruns: u64,
    /// Kernel-side event accounting: sent, rate-limited, lost to a full ring.
    pub kernel: KernelStats,
    /// TCP events read from the ring buffer.
    pub tcp_events_received: u64,
    /// Unicast RTM_GETLINK requests made because eBPF signals asked for them (fast path).
    pub fast_link_checks: u64,
    /// The agent process's resource use.
    pub process: ProcessUsage,
}

/// What Prometheus's standard `process_*` metrics report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}
