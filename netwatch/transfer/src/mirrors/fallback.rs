//! The fallback ladder: which mirror each try of one object goes to, and the retryer that
//! spaces the tries and waits out a Down network without spending them.
//!
//! A failure the network caused (refused, reset, timed out) goes back to the retryer: while
//! the agent says Down it costs no step, and the same mirror is tried again once Up. A
//! mirror's refusal (not found, forbidden, wrong bytes) moves to the next mirror at once: a
//! retry would get the same answer. A mirror that failed twice in a row for any object is
//! skipped by the others for the rest of the transfer, unless no other is left.
//!
//! A mirror whose endpoint the agent says is Down or Degraded is skipped too, for as long as
//! the verdict holds and a healthier mirror is left; a request in flight when its mirror's
//! endpoint goes Down is abandoned and sent to the next mirror at once, without spending an
//! attempt: waiting for the TCP timeout would tell nothing the agent has not said already.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
};

use crate::{error::TransferError, MirrorStore, StoreError, TransferOptions};
use crate::{
    retry::{ErrorClass, GiveUp, RetryPolicy, RetryReport, Retryer, StateSource},
    state::{self, StateWatch, Subject},
};

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
    /// The mirror sent nothing for the stall limit: the next mirror, at once, and this one
    /// counts a failure (avoided after two), without spending a retry attempt.
    #[error("{0}")]
    Stalled(String),
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
            Self::Network(error) => match netwatch_client::retry::classify(error) {
                ErrorClass::Permanent => ErrorClass::Transient,
                class => class,
            },
            Self::Mirror(_) | Self::Stalled(_) => ErrorClass::Transient,
            Self::Fatal(_) | Self::Exhausted => ErrorClass::Permanent,
        }
    }
}

/// Per transfer: each mirror's consecutive network failures, and the agent's verdict on each
/// mirror's endpoint.
pub(crate) struct MirrorHealth {
    failures: Vec<AtomicU32>,
    endpoints: Vec<Option<Subject>>,
    watch: Option<StateWatch>,
}

impl MirrorHealth {
    /// Counting failures only: no verdicts.
    pub(crate) fn new(mirrors: usize) -> Self {
        Self {
            failures: (0..mirrors).map(|_| AtomicU32::new(0)).collect(),
            endpoints: vec![None; mirrors],
            watch: None,
        }
    }

    /// Counting failures, and reading each mirror's endpoint verdict from `watch`.
    pub(crate) fn watching(mirrors: &[MirrorStore], watch: Option<StateWatch>) -> Self {
        Self {
            endpoints: mirrors
                .iter()
                .map(|m| m.endpoint().map(|e| Subject::Endpoint(e.to_string())))
                .collect(),
            watch,
            ..Self::new(mirrors.len())
        }
    }

    fn broken(&self, mirror: usize) -> bool {
        self.failures[mirror].load(Ordering::Relaxed) >= BROKEN_AFTER
    }

    fn verdict(&self, mirror: usize) -> Option<state::Health> {
        let (subject, watch) = (self.endpoints[mirror].as_ref()?, self.watch.as_ref()?);
        // A closed source's last word is no longer news.
        (!watch.is_closed())
            .then(|| watch.verdict(subject).map(|v| v.health))
            .flatten()
    }

    fn is_down(&self, mirror: usize) -> bool {
        self.verdict(mirror) == Some(state::Health::Down)
    }

    /// How much to avoid a mirror now: 0 sound, 1 Degraded or broken, 2 Down.
    fn avoidance(&self, mirror: usize) -> u8 {
        match self.verdict(mirror) {
            Some(state::Health::Down) => 2,
            Some(state::Health::Degraded) => 1,
            _ => u8::from(self.broken(mirror)),
        }
    }

    /// Returns once `mirror`'s endpoint is Down; never, without an endpoint or a source.
    async fn went_down(&self, mirror: usize) {
        if let (Some(subject), Some(watch)) = (&self.endpoints[mirror], &self.watch) {
            let mut watch = watch.clone();
            loop {
                if watch
                    .verdict(subject)
                    .is_some_and(|v| v.health == state::Health::Down)
                {
                    return;
                }
                if watch.changed().await.is_none() {
                    break;
                }
            }
        }
        std::future::pending().await
    }
}

/// The watch whose endpoint verdicts demote mirrors: only when some mirror has an endpoint
/// and the source is reachable now (without it, mirrors are tried as ranked).
pub(crate) async fn endpoint_watch(
    mirrors: &[MirrorStore],
    source: Option<&std::sync::Arc<dyn StateSource>>,
) -> Option<StateWatch> {
    if mirrors.iter().all(|m| m.endpoint().is_none()) {
        return None;
    }
    match source?.watch().await {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::debug!(%error, "no endpoint verdicts: mirrors are not demoted by health");
            None
        }
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
    /// The next step's mirror: skipping mirrors that refused this object, and mirrors to
    /// avoid (broken for the transfer, or whose endpoint is Degraded or Down) while one less
    /// to avoid remains.
    fn next(&mut self, steps: &[usize], health: &MirrorHealth) -> Option<usize> {
        let avoid: Vec<u8> = (0..self.refused.len())
            .map(|m| health.avoidance(m))
            .collect();
        let least = steps[self.step.min(steps.len())..]
            .iter()
            .filter(|&&m| !self.refused[m])
            .map(|&m| avoid[m])
            .min()?;
        while let Some(&m) = steps.get(self.step) {
            if !self.refused[m] && avoid[m] == least {
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
    health: &MirrorHealth,
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
                for failures in &health.failures {
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
                // Raced against the endpoint going Down, unless it is Down already (then it is
                // the only mirror left, and is tried after all).
                let outcome = if health.is_down(m) {
                    Some(op(m).await)
                } else {
                    tokio::select! {
                        outcome = op(m) => Some(outcome),
                        () = health.went_down(m) => None,
                    }
                };
                let mut at = position_ref.lock().expect("never held across a panic");
                let Some(outcome) = outcome else {
                    let error = format!(
                        "mirror `{}`: its endpoint `{}` went Down during the request",
                        mirrors[m].name(),
                        mirrors[m].endpoint().unwrap_or_default()
                    );
                    tracing::info!(mirror = mirrors[m].name(), "{error}: trying the next mirror");
                    at.failures.push((m, error));
                    mirror = at.next(steps, health);
                    continue;
                };
                match outcome {
                    Ok(value) => {
                        health.failures[m].store(0, Ordering::Relaxed);
                        return Ok((value, m));
                    }
                    Err(Failure::Mirror(error)) => {
                        tracing::debug!(mirror = mirrors[m].name(), %error, "trying the next mirror");
                        at.refused[m] = true;
                        at.failures.push((m, error));
                        mirror = at.next(steps, health);
                    }
                    Err(Failure::Stalled(error)) if health.is_down(m) => {
                        // Silence from a mirror the agent calls Down is the network's (a
                        // session over a dead link, a connect into a black hole): the retryer
                        // waits for the network instead of the mirror being given up.
                        tracing::info!(mirror = mirrors[m].name(), "{error} while its endpoint is Down: waiting for the network");
                        at.failures.push((m, error.clone()));
                        return Err(Failure::Stalled(error));
                    }
                    Err(Failure::Stalled(error)) => {
                        tracing::warn!(mirror = mirrors[m].name(), "{error}: trying the next mirror");
                        health.failures[m].fetch_add(1, Ordering::Relaxed);
                        at.refused[m] = true;
                        at.failures.push((m, error));
                        mirror = at.next(steps, health);
                    }
                    Err(Failure::Network(error)) => {
                        health.failures[m].fetch_add(1, Ordering::Relaxed);
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
        let health = MirrorHealth::new(3);
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
        health.failures[1].store(BROKEN_AFTER, Ordering::Relaxed);
        assert_eq!(at.next(&steps, &health), Some(2));
        // Only broken mirrors left: they are tried after all.
        health.failures[2].store(BROKEN_AFTER, Ordering::Relaxed);
        let mut fresh = Position {
            step: 2,
            counted: 0,
            refused: vec![true, false, false],
            failures: Vec::new(),
            calls: 0,
        };
        assert_eq!(fresh.next(&steps, &health), Some(1));
    }

    mod endpoints {
        use std::{
            sync::{atomic::AtomicUsize, Arc},
            time::Duration,
        };

        use tokio::sync::watch;

        use super::super::*;
        use crate::{
            retry::{Jitter, RetryBudget},
            state::NetworkState,
            tests::network_state,
            Access, MirrorUrl,
        };

        /// Mirrors `a` (endpoint `ea`), `b` (endpoint `eb`) and `c` (none).
        fn mirrors(dir: &std::path::Path) -> Vec<MirrorStore> {
            ["a", "b", "c"]
                .iter()
                .map(|name| {
                    let url: MirrorUrl =
                        format!("file://{}/{name}", dir.display()).parse().unwrap();
                    let endpoint = (*name != "c").then(|| format!("e{name}"));
                    MirrorStore::open(name, &url, Access::Write)
                        .unwrap()
                        .with_endpoint(endpoint)
                })
                .collect()
        }

        /// The three mirrors, with the verdicts of a state the test sends, and the get ladder.
        struct Watched {
            _dir: tempfile::TempDir,
            mirrors: Vec<MirrorStore>,
            health: MirrorHealth,
            steps: Vec<usize>,
        }

        impl Watched {
            fn new() -> (Self, watch::Sender<Arc<NetworkState>>) {
                let dir = tempfile::tempdir().unwrap();
                let mirrors = mirrors(dir.path());
                let (sender, watch) = StateWatch::channel(NetworkState::initial(0));
                let watched = Self {
                    health: MirrorHealth::watching(&mirrors, Some(watch)),
                    _dir: dir,
                    mirrors,
                    steps: get_ladder(3),
                };
                (watched, sender)
            }

            /// Where `position` goes next.
            fn next(&self, mut position: Position) -> Option<usize> {
                position.next(&self.steps, &self.health)
            }

            /// "a chunk" through `op`, with the test options.
            async fn get_chunk<F, Fut>(&self, op: F) -> Served<usize>
            where
                F: Fn(usize) -> Fut,
                Fut: Future<Output = Result<usize, Failure>>,
            {
                let what = || "a chunk".to_string();
                run(
                    &options(),
                    &self.mirrors,
                    &self.health,
                    &self.steps,
                    what,
                    op,
                )
                .await
                .unwrap()
            }
        }

        fn state(verdicts: &[(&str, state::Health)]) -> Arc<NetworkState> {
            Arc::new(network_state(verdicts))
        }

        fn start(at: usize) -> Position {
            Position {
                step: at,
                counted: 0,
                refused: vec![false; 3],
                failures: Vec::new(),
                calls: 0,
            }
        }

        fn options() -> TransferOptions {
            TransferOptions {
                policy: RetryPolicy {
                    initial_delay: Duration::from_millis(1),
                    jitter: Jitter::None,
                    ..TransferOptions::default().policy
                },
                budget: RetryBudget::new(1000),
                ..TransferOptions::default()
            }
        }

        #[test]
        fn a_demoted_mirror_is_skipped_while_a_healthier_one_remains_and_not_after() {
            use state::Health::{Degraded, Down, Up};
            let (w, sender) = Watched::new();
            assert_eq!(w.next(start(0)), Some(0));

            sender.send_replace(state(&[("ea", Down), ("eb", Up)]));
            assert_eq!(w.next(start(0)), Some(1));
            // Degraded is avoided too, but preferred to Down.
            sender.send_replace(state(&[("ea", Down), ("eb", Degraded)]));
            assert_eq!(w.next(start(0)), Some(2));
            let mut without_c = start(0);
            without_c.refused[2] = true;
            assert_eq!(w.next(without_c), Some(1));
            // Only a Down mirror left: it is tried after all.
            let mut only_a = start(0);
            only_a.refused[1] = true;
            only_a.refused[2] = true;
            assert_eq!(w.next(only_a), Some(0));
            // Healthy again: used again at once.
            sender.send_replace(state(&[("ea", Up), ("eb", Up)]));
            assert_eq!(w.next(start(0)), Some(0));
            // A closed source demotes nothing.
            sender.send_replace(state(&[("ea", Down)]));
            drop(sender);
            assert_eq!(w.next(start(0)), Some(0));
        }

        #[tokio::test(start_paused = true)]
        async fn a_request_in_flight_moves_on_when_its_mirror_goes_down_without_spending_an_attempt(
        ) {
            let (w, sender) = Watched::new();
            let calls: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            let down_later = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                sender.send_replace(state(&[("ea", state::Health::Down)]));
                sender
            });
            let served = w
                .get_chunk(|m| {
                    calls[m].fetch_add(1, Ordering::Relaxed);
                    async move {
                        if m == 0 {
                            // A request the network swallowed: no answer, ever.
                            std::future::pending::<()>().await;
                        }
                        Ok(m)
                    }
                })
                .await;
            assert_eq!((served.value, served.mirror), (1, 1));
            assert_eq!(served.report.attempts, 1, "no attempt spent");
            assert_eq!(served.calls, 2);
            assert!(
                served.failures[0].1.contains("endpoint `ea` went Down"),
                "{:?}",
                served.failures
            );
            assert_eq!(w.health.failures[0].load(Ordering::Relaxed), 0);

            // Up again: the next object goes to the first mirror again.
            let sender = down_later.await.unwrap();
            sender.send_replace(state(&[("ea", state::Health::Up)]));
            let served = w.get_chunk(|m| async move { Ok(m) }).await;
            assert_eq!(served.mirror, 0);
            assert_eq!(calls[2].load(Ordering::Relaxed), 0);
        }
    }
}
