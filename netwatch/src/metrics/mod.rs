//! Prometheus metrics on a loopback address: per-interface counters, retransmits, verdicts,
//! and what the agent itself costs.

use crate::ebpf::KernelStats;

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
    /// The agent process's resident memory and CPU time.
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramCost {
    pub name: String,
    pub id: u32,
    pub run_time_ns: u64,
    pub run_count: u64,
}
