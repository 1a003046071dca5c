//! The loss ratio: retransmitted segments over the segments they are a share of, with a
//! lower bar to leave Degraded than to enter it, so a ratio hovering at the threshold does
//! not flap.

use crate::state::Thresholds;

use super::{secs, window::Sample};

/// What the retransmitted segments are divided by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denominator {
    /// TCP data segments sent (tc egress): the same unit as the numerator.
    DataSegments(u64),
    /// Packets sent, pure ACKs included, where data segments are not counted: the ratio
    /// then reads low.
    Packets(u64),
    /// Packets received from an endpoint, where nothing counts what was sent to it.
    Replies(u64),
}

/// Why the window is lossy, if it is. Retransmits that follow a stall are not loss (the
/// stall rules judge those), and at least `min_retransmits` segments are needed to enter
/// Degraded but not to stay: one quiet window must not end a Degraded period while loss goes
/// on at a low rate.
pub fn lossy(
    growth: &Sample,
    denominator: Denominator,
    degraded: bool,
    t: &Thresholds,
) -> Option<String> {
    let lost = growth.lost_segs();
    let (sent, unit) = match denominator {
        Denominator::DataSegments(n) => (n, "of data segments sent"),
        Denominator::Packets(n) => (n, "of packets sent"),
        Denominator::Replies(n) => (n, "of packets received from it"),
    };
    if lost == 0 || sent == 0 || (!degraded && lost < t.min_retransmits) {
        return None;
    }
    let ratio = lost as f64 / sent as f64;
    let bar = if degraded {
        t.recovered_retransmit_ratio
    } else {
        t.degraded_retransmit_ratio
    };
    (ratio > bar).then(|| {
        format!(
            "loss: {lost} segments retransmitted, {:.1}% {unit} in the last {}",
            ratio * 100.0,
            secs(t.loss_window)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(retrans_segs: u64, stall_segs: u64) -> Sample {
        Sample {
            retrans_segs,
            stall_segs,
            ..Sample::default()
        }
    }

    #[test]
    fn entering_needs_a_minimum_count_and_staying_does_not() {
        let t = Thresholds::default();
        let few = window(2, 0);
        assert!(lossy(&few, Denominator::DataSegments(20), false, &t).is_none());
        assert!(lossy(&few, Denominator::DataSegments(20), true, &t).is_some());
    }

    #[test]
    fn retransmits_after_a_stall_are_not_loss() {
        let t = Thresholds::default();
        let after_outage = window(50, 50);
        assert!(lossy(&after_outage, Denominator::DataSegments(60), false, &t).is_none());
        let reason = lossy(&window(10, 0), Denominator::DataSegments(200), false, &t).unwrap();
        assert!(reason.contains("5.0% of data segments sent"), "{reason}");
    }
}
