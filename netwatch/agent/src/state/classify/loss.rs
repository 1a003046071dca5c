//! The loss ratio: retransmitted segments over the segments they are a share of, with a
//! lower bar to leave Degraded than to enter it, so a ratio hovering at the threshold does
//! not flap.
//!
//! Entering needs confidence, not just a ratio: a loss takes a whole buffer (up to ~45
//! segments with TSO/GSO), so a window holds only a few independent loss events, and at 1%
//! loss a 3 s window would now and then read 2% by chance. Degraded is entered when the
//! lower end of the Wilson score interval (one-sided 95%) of the ratio is above the bar,
//! taking the buffers sent as the trials (the segments of one buffer are lost together).
//!
//! Leaving needs either the ratio over the window to fall below the lower bar, or, sooner,
//! confidence that the loss has ended: the last `CLEAR_WINDOW_NS` had a ratio below the lower
//! bar over enough buffers that the upper end of the interval is below the entry bar.
//! On a busy link that takes half a second; a quiet one waits out the window.

use crate::state::Thresholds;

use super::{secs, window::Sample};

/// z for a one-sided 95% bound.
const Z: f64 = 1.645;

/// How far back "the loss has ended" is judged.
pub const CLEAR_WINDOW_NS: u64 = 500_000_000;

/// What the retransmits are a share of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denominator {
    /// TCP data sent (tc egress): segments, and the buffers that carried them.
    Data { segs: u64, buffers: u64 },
    /// Packets sent, pure ACKs included, where data is not counted: the ratio reads low.
    Packets(u64),
    /// Packets received from an endpoint, where nothing counts what was sent to it.
    Replies(u64),
}

impl Denominator {
    /// (segments, buffers, what they are, for people).
    fn counts(self) -> (u64, u64, &'static str) {
        match self {
            Self::Data { segs, buffers } => (segs, buffers, "of data segments sent"),
            Self::Packets(n) => (n, n, "of packets sent"),
            Self::Replies(n) => (n, n, "of packets received from it"),
        }
    }
}

/// Why the window is lossy, if it is. Retransmits that follow a stall are not loss (the
/// stall rules judge those); at least `min_retransmits` retransmits are needed to enter
/// Degraded but not to stay: one quiet window must not end a Degraded period while loss goes
/// on at a low rate. `cleared`: the loss has ended, by [`cleared`].
pub fn lossy(
    growth: &Sample,
    denominator: Denominator,
    degraded: bool,
    cleared: bool,
    t: &Thresholds,
) -> Option<String> {
    let (sent_segs, sent_buffers, unit) = denominator.counts();
    let (lost_segs, lost_buffers) = (growth.lost_segs(), growth.lost_buffers());
    if lost_segs == 0 || sent_segs == 0 {
        return None;
    }
    let ratio = lost_segs as f64 / sent_segs as f64;
    let lossy = if degraded {
        ratio > t.recovered_retransmit_ratio && !cleared
    } else {
        lost_buffers >= t.min_retransmits
            && wilson_lower(ratio.min(1.0), sent_buffers) > t.degraded_retransmit_ratio
    };
    lossy.then(|| {
        format!(
            "loss: {lost_segs} segments retransmitted, {:.1}% {unit} in the last {}",
            ratio * 100.0,
            secs(t.loss_window)
        )
    })
}

/// Whether the last moment (`recent`, over `CLEAR_WINDOW_NS`) shows the loss has ended: its
/// ratio is below the leave bar, over so many buffers that the loss is below the entry bar
/// with 95% confidence (about 130 buffers without a retransmit). Buffers are the trials, as
/// for entering: a buffer's segments are lost together (a GSO buffer crosses a veth whole).
///
/// Only data sent proves it: a link or endpoint judged against packets (pure ACKs included,
/// on a link without the egress counter) or replies could read a download's ACKs as a clean
/// moment while the loss goes on; it keeps the recovery hold instead.
pub fn cleared(recent: &Sample, denominator: Denominator, t: &Thresholds) -> bool {
    let Denominator::Data {
        buffers: sent_buffers,
        ..
    } = denominator
    else {
        return false;
    };
    if sent_buffers == 0 {
        return false;
    }
    // Every retransmit counts here, a stall's too: excusing them is for entering Degraded,
    // not for proving the loss over.
    let ratio = (recent.retransmits as f64 / sent_buffers as f64).min(1.0);
    ratio <= t.recovered_retransmit_ratio
        && wilson_upper(ratio, sent_buffers) < t.degraded_retransmit_ratio
}

/// The lower end of the Wilson score interval for a ratio `p` seen over `n` trials.
fn wilson_lower(p: f64, n: u64) -> f64 {
    wilson(p, n).0
}

fn wilson_upper(p: f64, n: u64) -> f64 {
    wilson(p, n).1
}

/// The Wilson score interval (one-sided 95% at each end) for `p` over `n` trials.
fn wilson(p: f64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    (
        ((centre - spread) / scale).max(0.0),
        ((centre + spread) / scale).min(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(lost: u64, stall: u64) -> Sample {
        Sample {
            retrans_segs: lost * 10,
            retransmits: lost,
            stall_segs: stall * 10,
            stall_retransmits: stall,
            ..Sample::default()
        }
    }

    fn data(buffers: u64) -> Denominator {
        Denominator::Data {
            segs: buffers * 10,
            buffers,
        }
    }

    #[test]
    fn only_data_sent_can_prove_the_loss_over() {
        let t = Thresholds::default();
        let clean = window(0, 0);
        assert!(cleared(&clean, data(500), &t));
        // 500 packets with no retransmit are a download's ACKs as easily as a clean moment.
        assert!(!cleared(&clean, Denominator::Packets(500), &t));
        assert!(!cleared(&clean, Denominator::Replies(500), &t));
    }

    #[test]
    fn entering_needs_a_minimum_count_and_staying_does_not() {
        let t = Thresholds::default();
        assert!(lossy(&window(2, 0), data(20), false, false, &t).is_none());
        assert!(lossy(&window(2, 0), data(20), true, false, &t).is_some());
    }

    #[test]
    fn retransmits_after_a_stall_are_not_loss() {
        let t = Thresholds::default();
        assert!(lossy(&window(50, 50), data(60), false, false, &t).is_none());
        let reason = lossy(&window(10, 0), data(200), false, false, &t).unwrap();
        assert!(reason.contains("5.0% of data segments sent"), "{reason}");
    }

    #[test]
    fn one_percent_that_reads_two_by_chance_is_not_degraded_but_five_percent_is() {
        let t = Thresholds::default();
        // 300 buffers in the window: 7 lost reads 2.3%, plausible at 1% (Poisson, mean 3).
        assert!(lossy(&window(7, 0), data(300), false, false, &t).is_none());
        assert!(lossy(&window(15, 0), data(300), false, false, &t).is_some());
        // Five of a hundred within the first second is already enough.
        assert!(lossy(&window(5, 0), data(100), false, false, &t).is_some());
    }

    #[test]
    fn loss_has_ended_only_on_plenty_of_clean_data() {
        let t = Thresholds::default();
        // Half a second of a busy flow, nothing lost: ended, and it may leave at once.
        assert!(cleared(&window(0, 0), data(200), &t));
        assert!(lossy(&window(20, 0), data(300), true, true, &t).is_none());
        // A trickle proves nothing (60 buffers without a loss is likely at 5%); nor does a
        // busy moment that still loses.
        assert!(!cleared(&window(0, 0), data(60), &t));
        assert!(!cleared(&window(3, 0), data(200), &t));
        // A stall's retransmits are not loss, but nor are they a sign that loss is over.
        assert!(!cleared(&window(3, 3), data(200), &t));
        assert!(lossy(&window(20, 0), data(300), true, false, &t).is_some());
    }

    #[test]
    fn the_wilson_bound_is_below_the_ratio_and_tightens_with_more_trials() {
        let small = wilson_lower(0.05, 100);
        let large = wilson_lower(0.05, 10_000);
        assert!(
            small < 0.05 && large < 0.05 && large > small,
            "{small} {large}"
        );
        assert!((0.02..0.03).contains(&small), "{small}");
    }
}
