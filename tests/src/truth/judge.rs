//! Judging one step of a scenario from the states a subscription recorded.

use std::time::{Duration, Instant};

use netwatch_client::state::Health;

use super::{Expect, Outcome};
use crate::verdicts::{Seen, Subscription};

/// One step of a scenario: what was done, when, and how long the agent was watched after.
pub struct Phase<'a> {
    pub scenario: &'a str,
    pub step: &'a str,
    pub sub: &'a Subscription,
    /// The state in effect when the step began.
    initial: Seen,
    mark: usize,
    pub began: Instant,
}

impl<'a> Phase<'a> {
    /// Marks the start of a step: call just before acting.
    pub fn begin(scenario: &'a str, step: &'a str, sub: &'a Subscription) -> Self {
        Self {
            scenario,
            step,
            sub,
            initial: sub.latest(),
            mark: sub.mark(),
            began: Instant::now(),
        }
    }

    /// Waits until every expectation holds (or `limit` passes), then watches `settle` more
    /// for flip-flops, and judges.
    pub fn end(self, expects: &[Expect], limit: Duration, settle: Duration) -> Vec<Outcome> {
        let deadline = self.began + limit;
        while Instant::now() < deadline {
            let latest = self.sub.latest();
            if expects
                .iter()
                .all(|e| latest.health(&e.subject) == Some(e.health))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(settle);
        let mut seen = vec![self.initial.clone()];
        seen.extend(self.sub.since(self.mark));
        expects
            .iter()
            .map(|e| judge(self.scenario, self.step, &seen, self.began, e))
            .collect()
    }
}

/// How `expect.subject` fared across `seen` (the state at `from` first, then each change).
pub fn judge(scenario: &str, step: &str, seen: &[Seen], from: Instant, expect: &Expect) -> Outcome {
    let healths: Vec<(Instant, Option<Health>)> = seen
        .iter()
        .map(|s| (s.at.max(from), s.health(&expect.subject)))
        .collect();
    // The first state from which it stayed right to the end.
    let stable_from = healths
        .iter()
        .rposition(|(_, h)| *h != Some(expect.health))
        .map_or(0, |wrong| wrong + 1);
    let to_right = healths
        .get(stable_from)
        .map(|(at, _)| at.saturating_duration_since(from));
    let first_right = healths.iter().position(|(_, h)| *h == Some(expect.health));
    let flips = first_right.map_or(0, |first| {
        healths[first..]
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .count()
    });
    // A step that begins Down (a recovery) is judged from the first verdict that is not.
    let false_down = expect.health != Health::Down
        && healths
            .iter()
            .skip_while(|(_, h)| *h == Some(Health::Down))
            .any(|(_, h)| *h == Some(Health::Down));
    // Worse than expected (Degraded when Up is right), once the step's first verdict (the
    // fault it recovers from, say) has passed: a false alarm on the way.
    let initial = healths.first().and_then(|(_, h)| *h);
    let false_degraded = expect.health != Health::Degraded
        && expect.health != Health::Down
        && healths
            .iter()
            .skip_while(|(_, h)| *h == initial)
            .any(|(_, h)| *h == Some(Health::Degraded));
    let history = seen
        .iter()
        .zip(&healths)
        .map(|(state, (at, h))| {
            format!(
                "{}@{:+.2}s ({})",
                h.map_or("none", Health::as_str),
                at.saturating_duration_since(from).as_secs_f64(),
                state.reasons(&expect.subject)
            )
        })
        .collect::<Vec<_>>()
        .join(" -> ");
    Outcome {
        scenario: scenario.to_string(),
        step: step.to_string(),
        subject: expect.subject.clone(),
        expected: expect.health,
        observed: healths.last().and_then(|(_, h)| *h),
        to_right,
        evidence_after: None,
        within: expect.within,
        flips,
        false_down,
        false_degraded,
        history,
    }
}
