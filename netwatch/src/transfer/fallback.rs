//! The fallback ladder: which mirror each try of one object goes to, and the retryer that
//! spaces the tries and waits out a Down network without spending them.
//!
//! A failure the network caused (refused, reset, timed out) goes back to the retryer: while
//! the agent says Down it costs no step, and the same mirror is tried again once Up. A
//! mirror's refusal (not found, forbidden, wrong bytes) moves to the next mirror at once: a
//! retry would get the same answer. A mirror that failed twice in a row for any object is
//! skipped by the others for the rest of the transfer, unless no other is left.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
};

use super::{error::TransferError, MirrorStore, StoreError, TransferOptions};
use crate::retry::{ErrorClass, GiveUp, RetryPolicy, RetryReport, Retryer};

/// Consecutive network failures after which a mirror is skipped by the other objects.
const BROKEN_AFTER: u32 = 2;

/// The mirror of each try for a `get`: primary twice, secondary twice, tertiary once, and
/// any further mirror once.
pub(crate) fn get_ladder(mirrors: usize) -> Vec<usize> {
    (0..mirrors)
        .flat_map(|m| std::iter::repeat_n(m, if m < 2 { 2 } else { 1 }))
        .collect()
}

/// How a try failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The network, or the mirror's host, failed: retried as the ladder and retryer say.
    #[error("{0}")]
    Network(StoreError),
    /// The mirror answered, but cannot serve this: the next mirror, at once.
    #[error("{0}")]
    Mirror(String),
    /// Nothing a mirror could fix (the local disk failed): stop.
    #[error("{0}")]
    Fatal(TransferError),
    /// Every step of the ladder was used.
    #[error("no mirror left to try")]
    Exhausted,
}

impl Failure {
    /// A mirror's error, as the network's fault or the mirror's.
    pub(crate) fn store(error: StoreError) -> Self {
        if error.is_mirror_fault() {
            Self::Mirror(error.to_string())
        } else {
            Self::Network(error)
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            Self::Network(error) => match crate::retry::classify(error) {
                ErrorClass::Permanent => ErrorClass::Transient,
                class => class,
            },
            Self::Mirror(_) => ErrorClass::Transient,
            Self::Fatal(_) | Self::Exhausted => ErrorClass::Permanent,
        }
    }
}

/// Per transfer: each mirror's consecutive network failures.
pub(crate) struct Health(Vec<AtomicU32>);

impl Health {
    pub(crate) fn new(mirrors: usize) -> Self {
        Self((0..mirrors).map(|_| AtomicU32::new(0)).collect())
    }

    fn broken(&self, mirror: usize) -> bool {
        self.0[mirror].load(Ordering::Relaxed) >= BROKEN_AFTER
    }
}

/// An object served: by which mirror, after which failures.
pub(crate) struct Served<T> {
    pub value: T,
    pub mirror: usize,
    pub failures: Vec<(usize, String)>,
    pub calls: u32,
    pub report: RetryReport,
}

/// Where a ladder is in its steps for one object.
struct Position {
    step: usize,
    counted: u32,
    refused: Vec<bool>,
    failures: Vec<(usize, String)>,
    calls: u32,
}

impl Position {
    /// The next step's mirror: skipping mirrors that refused this object, and mirrors broken
    /// for the transfer while a sound one remains.
    fn next(&mut self, steps: &[usize], health: &Health) -> Option<usize> {
        let usable = |m: usize, refused: &[bool]| !refused[m];
        let any_sound = steps[self.step.min(steps.len())..]
            .iter()
            .any(|&m| usable(m, &self.refused) && !health.broken(m));
        while let Some(&m) = steps.get(self.step) {
            if usable(m, &self.refused) && !(any_sound && health.broken(m)) {
                return Some(m);
            }
            self.step += 1;
        }
        None
    }
}

/// Tries `op` on the mirrors `steps` names, in order, under the options' retry policy.
pub(crate) async fn run<T, F, Fut>(
    options: &TransferOptions,
    mirrors: &[MirrorStore],
    health: &Health,
    steps: &[usize],
    what: impl FnOnce() -> String,
    op: F,
) -> Result<Served<T>, TransferError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retryer = Retryer::new(RetryPolicy {
        max_attempts: u32::try_from(steps.len()).unwrap_or(u32::MAX).max(1),
        ..options.policy.clone()
    })
    .with_budget(options.budget.clone())
    .with_cancellation(options.cancel.clone());
    if let Some(state) = &options.state {
        retryer = retryer.with_state(state.clone(), options.subject.clone());
    }
    let position = Mutex::new(Position {
        step: 0,
        counted: 0,
        refused: vec![false; mirrors.len()],
        failures: Vec::new(),
        calls: 0,
    });
    let (position_ref, op) = (&position, &op);
    let result = retryer
        .run_with(Failure::class, |attempt| async move {
            if attempt.after_outage {
                // The failures before the outage were the network's, not the mirrors'.
                for failures in &health.0 {
                    failures.store(0, Ordering::Relaxed);
                }
            }
            let mut mirror = {
                let mut at = position_ref.lock().expect("never held across a panic");
                // A failure that counted uses its step; one met while Down does not.
                if attempt.number > at.counted {
                    if at.counted > 0 {
                        at.step += 1;
                    }
                    at.counted = attempt.number;
                }
                if attempt.switch_mirror {
                    // Degraded: the retryer asks for another mirror.
                    let current = steps.get(at.step).copied();
                    while at.step < steps.len() && steps.get(at.step).copied() == current {
                        at.step += 1;
                    }
                }
                at.next(steps, health)
            };
            loop {
                let Some(m) = mirror else {
                    return Err(Failure::Exhausted);
                };
                position_ref.lock().expect("never held across a panic").calls += 1;
                let outcome = op(m).await;
                let mut at = position_ref.lock().expect("never held across a panic");
                match outcome {
                    Ok(value) => {
                        health.0[m].store(0, Ordering::Relaxed);
                        return Ok((value, m));
                    }
                    Err(Failure::Mirror(error)) => {
                        tracing::debug!(mirror = mirrors[m].name(), %error, "trying the next mirror");
                        at.refused[m] = true;
                        at.failures.push((m, error));
                        mirror = at.next(steps, health);
                    }
                    Err(Failure::Network(error)) => {
                        health.0[m].fetch_add(1, Ordering::Relaxed);
                        at.failures.push((m, error.to_string()));
                        return Err(Failure::Network(error));
                    }
                    Err(other) => return Err(other),
                }
            }
        })
        .await;
    let at = position.into_inner().expect("never held across a panic");
    match result {
        Ok(((value, mirror), report)) => Ok(Served {
            value,
            mirror,
            failures: at.failures,
            calls: at.calls,
            report,
        }),
        Err(error) => {
            if error.reason == GiveUp::Cancelled {
                return Err(TransferError::Cancelled);
            }
            let report = Box::new(error.report);
            let tried: Vec<String> = at.failures.iter().map(|(_, error)| error.clone()).collect();
            let why = match (error.cause, error.reason) {
                (Some(Failure::Fatal(fatal)), _) => return Err(fatal),
                (_, _) if mirrors.is_empty() => "no mirror is configured".to_string(),
                (Some(Failure::Exhausted) | Some(Failure::Mirror(_)), _) => {
                    format!("no mirror could serve it: {}", tried.join("; "))
                }
                (_, reason) => format!(
                    "{reason} after {} attempts, {} waiting for the network: {}",
                    report.attempts,
                    humantime::format_duration(std::time::Duration::from_millis(
                        report.network_wait.as_millis() as u64
                    )),
                    tried.join("; ")
                ),
            };
            Err(TransferError::Unavailable {
                what: what(),
                why,
                report,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_is_primary_twice_secondary_twice_then_the_rest_once() {
        assert_eq!(get_ladder(0), Vec::<usize>::new());
        assert_eq!(get_ladder(1), vec![0, 0]);
        assert_eq!(get_ladder(3), vec![0, 0, 1, 1, 2]);
        assert_eq!(get_ladder(4), vec![0, 0, 1, 1, 2, 3]);
    }

    #[test]
    fn refused_and_broken_mirrors_are_skipped_while_a_sound_one_remains() {
        let steps = get_ladder(3);
        let health = Health::new(3);
        let mut at = Position {
            step: 0,
            counted: 0,
            refused: vec![false; 3],
            failures: Vec::new(),
            calls: 0,
        };
        assert_eq!(at.next(&steps, &health), Some(0));
        at.refused[0] = true;
        assert_eq!(at.next(&steps, &health), Some(1));
        health.0[1].store(BROKEN_AFTER, Ordering::Relaxed);
        assert_eq!(at.next(&steps, &health), Some(2));
        // Only broken mirrors left: they are tried after all.
        health.0[2].store(BROKEN_AFTER, Ordering::Relaxed);
        let mut fresh = Position {
            step: 2,
            counted: 0,
            refused: vec![true, false, false],
            failures: Vec::new(),
            calls: 0,
        };
        assert_eq!(fresh.next(&steps, &health), Some(1));
    }
}
