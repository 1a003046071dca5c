//! The rules for one link, before hysteresis: the first that applies decides.

use crate::{
    netlink::{NeighState, OperState},
    state::{Health, LinkObservation, Thresholds},
};

use super::{ns, secs, window::Sample, Assessment};

/// What the link rules need beyond the observation itself.
pub struct LinkContext {
    pub now_ns: u64,
    /// Latest evidence of received traffic (XDP's last packet, or counters that grew).
    pub last_rx_ns: Option<u64>,
    /// Counter growth over the loss window, the flap window and the stall window.
    pub over_loss_window: Sample,
    pub over_flap_window: Sample,
    pub over_stall_window: Sample,
    /// Whether the link is Degraded now (the leave threshold then applies).
    pub degraded: bool,
}

pub fn assess(obs: &LinkObservation, cx: &LinkContext, t: &Thresholds) -> Assessment {
    let link = &obs.link;
    if !link.admin_up {
        return Assessment::new(Health::Down, "administratively down");
    }
    if !link.carrier {
        return Assessment::new(Health::Down, "no carrier");
    }
    if !matches!(link.oper, OperState::Up | OperState::Unknown) {
        return Assessment::new(Health::Down, format!("operstate {}", link.oper));
    }
    if let Some((gateway, Some(NeighState::Failed))) = obs.gateway {
        return Assessment::new(
            Health::Down,
            format!("gateway {gateway} unreachable (neighbour FAILED)"),
        );
    }
    let flaps = cx.over_flap_window.carrier_changes;
    if flaps >= u64::from(t.flap_changes) {
        return Assessment::new(
            Health::Degraded,
            format!(
                "flapping: {flaps} carrier changes in the last {}",
                secs(t.flap_window)
            ),
        );
    }
    if let Some(reason) = lossy(&cx.over_loss_window, cx.degraded, t) {
        return Assessment::new(Health::Degraded, reason);
    }
    let silent_ns = cx.last_rx_ns.map(|at| cx.now_ns.saturating_sub(at));
    let stall = &cx.over_stall_window;
    if silent_ns.is_some_and(|s| s >= ns(t.rx_stall))
        && stall.tx_packets > 0
        && stall.retransmits > 0
    {
        return Assessment::new(
            Health::Degraded,
            format!(
                "rx stalled for {:.1}s while tx continues ({} retransmits)",
                silent_ns.unwrap_or(0) as f64 / 1e9,
                stall.retransmits
            ),
        );
    }
    match silent_ns {
        Some(silent) if silent <= ns(t.evidence_window) => Assessment::new(
            Health::Up,
            format!(
                "carrier up, traffic received {:.1}s ago",
                silent as f64 / 1e9
            ),
        ),
        _ => Assessment::new(
            Health::Unknown,
            format!(
                "carrier up but no traffic received in the last {}: unverified",
                secs(t.evidence_window)
            ),
        ),
    }
}

/// Retransmits per transmitted packet over the loss window, with a lower bar to leave
/// Degraded than to enter it, so a ratio hovering at the threshold does not flap.
fn lossy(growth: &Sample, degraded: bool, t: &Thresholds) -> Option<String> {
    if growth.retransmits < t.min_retransmits || growth.tx_packets == 0 {
        return None;
    }
    let ratio = growth.retransmits as f64 / growth.tx_packets as f64;
    let bar = if degraded {
        t.recovered_retransmit_ratio
    } else {
        t.degraded_retransmit_ratio
    };
    (ratio > bar).then(|| {
        format!(
            "retransmits: {:.1}% of transmitted packets ({} in the last {})",
            ratio * 100.0,
            growth.retransmits,
            secs(t.loss_window)
        )
    })
}
