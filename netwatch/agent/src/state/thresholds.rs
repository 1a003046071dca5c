//! The classifier's thresholds. docs/verdict.md gives the reason for each default.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Traffic older than this is no evidence that a link or endpoint works.
    pub evidence_window: Duration,
    /// Window over which retransmit ratios are computed.
    pub loss_window: Duration,
    /// Retransmitted segments per data segment sent above which a link or endpoint is
    /// Degraded...
    pub degraded_retransmit_ratio: f64,
    /// ...and below which (held for `recovery_hold`) it is healthy again.
    pub recovered_retransmit_ratio: f64,
    /// Fewer retransmitted segments than this in `loss_window` never make anything Degraded
    /// (once Degraded, any loss above the leave ratio keeps it so).
    pub min_retransmits: u64,
    /// Carrier changes within `flap_window` that make a link flapping.
    pub flap_changes: u32,
    pub flap_window: Duration,
    /// How long a Degraded condition must stay absent before Up is given again.
    pub recovery_hold: Duration,
    /// Timeouts in a row toward an endpoint without an acknowledgement: blackholed (Down).
    /// Two in a row are Degraded ("no reply").
    pub blackhole_timeouts: u32,
    /// TCP data unanswered this long: the link or endpoint is Degraded ("no reply").
    pub rx_stall: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            evidence_window: Duration::from_secs(10),
            loss_window: Duration::from_secs(3),
            degraded_retransmit_ratio: 0.02,
            recovered_retransmit_ratio: 0.005,
            min_retransmits: 3,
            flap_changes: 4,
            flap_window: Duration::from_secs(10),
            recovery_hold: Duration::from_secs(3),
            blackhole_timeouts: 3,
            rx_stall: Duration::from_secs(1),
        }
    }
}
