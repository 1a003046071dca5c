//! Mirror scores and rank: a pure function of measured latency and bandwidth, the agent's
//! verdict on each mirror's endpoint, and the configured order (the original design:
//! latency 0.4, bandwidth 0.6, each normalised against the best mirror).

use std::cmp::Ordering;

use netwatch_client::state::Health;

/// The weight of latency in a score.
pub const LATENCY_WEIGHT: f64 = 0.4;
/// The weight of bandwidth: moving artifacts is mostly bytes, so it counts for more.
pub const BANDWIDTH_WEIGHT: f64 = 0.6;

/// What is known of a mirror's speed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Round trip of a cheap request, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Bytes per second, from a ranged read and observed transfers.
    pub bandwidth: Option<f64>,
}

/// Each mirror's score in 0..=1, or `None` when nothing is measured. The latency part is
/// the lowest latency over this one's, the bandwidth part this one's over the highest; a
/// figure that is not known counts 0 for its part, so a mirror never gains rank from what
/// is not known about it (it is measured again soon enough to earn it back).
pub fn scores(figures: &[Figures]) -> Vec<Option<f64>> {
    let valid = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
    let best_latency = figures
        .iter()
        .filter_map(|f| valid(f.latency_ms))
        .min_by(f64::total_cmp);
    let best_bandwidth = figures
        .iter()
        .filter_map(|f| valid(f.bandwidth))
        .max_by(f64::total_cmp);
    figures
        .iter()
        .map(|f| {
            let (latency, bandwidth) = (valid(f.latency_ms), valid(f.bandwidth));
            if latency.is_none() && bandwidth.is_none() {
                return None;
            }
            let latency_part = match (latency, best_latency) {
                (Some(l), Some(best)) => best / l,
                _ => 0.0,
            };
            let bandwidth_part = match (bandwidth, best_bandwidth) {
                (Some(b), Some(best)) => b / best,
                _ => 0.0,
            };
            Some(LATENCY_WEIGHT * latency_part + BANDWIDTH_WEIGHT * bandwidth_part)
        })
        .collect()
}

/// A mirror's class in the rank: every healthy mirror comes before every Degraded one, and
/// those before every Down or unreachable one, whatever the scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// The agent says Up or Unknown, or there is no agent or no endpoint to ask about.
    Healthy,
    /// The agent says the mirror's endpoint is Degraded.
    Degraded,
    /// The agent says Down, or the mirror did not answer its last measurement.
    Down,
}

impl Standing {
    /// From the endpoint's verdict (if any) and whether the last measurement was answered.
    pub fn of(verdict: Option<Health>, answered: bool) -> Self {
        match verdict {
            Some(Health::Down) => Self::Down,
            _ if !answered => Self::Down,
            Some(Health::Degraded) => Self::Degraded,
            Some(Health::Up | Health::Unknown) | None => Self::Healthy,
        }
    }
}

/// One mirror as the rank sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub standing: Standing,
    pub score: Option<f64>,
}

/// The order to try mirrors in, as indices into `candidates`, which come in configured
/// order (priority, then file order). By standing; within one, scored mirrors by score,
/// highest first, then unscored ones; ties keep the configured order. Scores are compared
/// as shown (two decimals), so that measurement noise between two equal mirrors does not
/// reorder them on every run.
pub fn rank(candidates: &[Candidate]) -> Vec<usize> {
    let shown = |score: Option<f64>| score.map(|s| (s * 100.0).round() as i64);
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        a.standing
            .cmp(&b.standing)
            .then_with(|| match (shown(a.score), shown(b.score)) {
                (Some(x), Some(y)) => y.cmp(&x),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(latency_ms: Option<f64>, bandwidth: Option<f64>) -> Figures {
        Figures {
            latency_ms,
            bandwidth,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn the_best_at_both_scores_one_and_the_others_their_share() {
        let s = scores(&[
            figures(Some(10.0), Some(100e6)),
            figures(Some(20.0), Some(50e6)),
            figures(Some(40.0), Some(100e6)),
        ]);
        assert!(close(s[0], 1.0), "{s:?}");
        assert!(close(s[1], 0.4 * 0.5 + 0.6 * 0.5), "{s:?}");
        assert!(close(s[2], 0.4 * 0.25 + 0.6), "{s:?}");
    }

    #[test]
    fn bandwidth_outweighs_latency() {
        // Twice the latency, twice the bandwidth: the faster link wins.
        let s = scores(&[
            figures(Some(1.0), Some(10e6)),
            figures(Some(2.0), Some(20e6)),
        ]);
        assert!(s[1] > s[0], "{s:?}");
    }

    #[test]
    fn a_missing_figure_counts_nothing_and_none_at_all_gives_no_score() {
        let s = scores(&[
            figures(Some(5.0), None),
            figures(Some(10.0), Some(1e6)),
            figures(None, None),
            figures(Some(f64::NAN), Some(-1.0)),
        ]);
        assert!(close(s[0], 0.4), "{s:?}");
        assert!(close(s[1], 0.4 * 0.5 + 0.6), "{s:?}");
        assert_eq!(s[2], None);
        assert_eq!(s[3], None, "nonsense figures are no figures");
    }

    #[test]
    fn standing_comes_from_the_verdict_and_the_answer() {
        assert_eq!(Standing::of(None, true), Standing::Healthy);
        assert_eq!(Standing::of(Some(Health::Unknown), true), Standing::Healthy);
        assert_eq!(Standing::of(Some(Health::Up), true), Standing::Healthy);
        assert_eq!(
            Standing::of(Some(Health::Degraded), true),
            Standing::Degraded
        );
        assert_eq!(Standing::of(Some(Health::Down), true), Standing::Down);
        assert_eq!(Standing::of(Some(Health::Up), false), Standing::Down);
        assert_eq!(Standing::of(Some(Health::Degraded), false), Standing::Down);
    }

    #[test]
    fn rank_is_by_standing_then_score_then_configured_order() {
        let c = |standing, score| Candidate { standing, score };
        let order = rank(&[
            c(Standing::Healthy, None),          // 0: unmeasured primary
            c(Standing::Degraded, Some(1.0)),    // 1: the best, but degraded
            c(Standing::Healthy, Some(0.5)),     // 2
            c(Standing::Down, Some(0.9)),        // 3
            c(Standing::Healthy, Some(0.8)),     // 4
            c(Standing::Healthy, None),          // 5
            c(Standing::Healthy, Some(0.50001)), // 6: equal to 2 as shown
            c(Standing::Degraded, None),         // 7
        ]);
        assert_eq!(order, vec![4, 2, 6, 0, 5, 1, 7, 3]);
    }

    #[test]
    fn rank_of_nothing_is_empty() {
        assert!(rank(&[]).is_empty());
    }
}
