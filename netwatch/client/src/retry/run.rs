//! One run: call, classify, consult the network, then wait out a Down, back off or give up.

use std::{fmt, future::Future, sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use super::{
    budget::{RETRY_COST, TIMEOUT_COST},
    schedule::Schedule,
    Attempt, ErrorClass, GiveUp, Resume, RetryError, RetryReport, Retryer, Watched,
};
use crate::state::{Health, StateWatch, Verdict, WaitOutcome};

/// What ended a wait other than the thing waited for.
enum Interrupt {
    Cancelled,
    Deadline,
}

struct Run<'a> {
    retryer: &'a Retryer,
    started: Instant,
    deadline: Option<Instant>,
    report: RetryReport,
}

impl Retryer {
    /// [`run`](Self::run), with the caller's classification (which may fall back on
    /// [`classify`](super::classify)).
    pub async fn run_with<T, E, F, Fut, C>(
        &self,
        classify: C,
        mut operation: F,
    ) -> Result<(T, RetryReport), RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> ErrorClass,
        E: fmt::Display,
    {
        let policy = &self.policy;
        let started = Instant::now();
        let mut run = Run {
            retryer: self,
            started,
            deadline: policy.deadline.map(|d| started + d),
            report: RetryReport::default(),
        };
        let rng = self
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let mut schedule = Schedule::new(policy, rng);
        let mut last: Option<E> = None;
        let (mut after_outage, mut switch_mirror) = (false, false);

        loop {
            run.report.attempts += 1;
            run.report.calls += 1;
            let attempt = Attempt {
                number: run.report.attempts,
                call: run.report.calls,
                after_outage,
                mirror: run.report.mirror,
                switch_mirror,
            };
            (after_outage, switch_mirror) = (false, false);
            let error = match run.guard(operation(attempt)).await {
                Ok(Ok(value)) => {
                    self.budget.reward_success();
                    return Ok((value, run.finish()));
                }
                Ok(Err(error)) => error,
                Err(interrupt) => return Err(run.interrupted(interrupt, last)),
            };
            let class = classify(&error);
            if class == ErrorClass::Permanent {
                tracing::debug!(attempt = attempt.number, %error, "not retrying: permanent failure");
                return Err(run.give_up(GiveUp::Permanent, Some(error)));
            }

            let network = match run.network().await {
                Ok(network) => network,
                Err(interrupt) => return Err(run.interrupted(interrupt, Some(error))),
            };
            let health = network.as_ref().map(|(_, _, verdict)| verdict.health);
            let refused = class == ErrorClass::Refused;
            if refused && health == Some(Health::Down) {
                tracing::debug!(%error, "refused by the peer's host: the path works; retrying on the schedule, not waiting for Up");
            }
            if let Some((state, mut watch, verdict)) =
                network.filter(|(_, _, v)| v.health == Health::Down && !refused)
            {
                // The attempt never had a chance: it does not count (gRPC's transparent retry).
                run.report.attempts -= 1;
                tracing::info!(
                    subject = %state.subject,
                    reasons = ?verdict.reasons,
                    %error,
                    "network is down, waiting for network to recover"
                );
                match run.wait_for_up(&mut watch, state).await {
                    Ok(WaitOutcome::Up(verdict)) => {
                        tracing::info!(subject = %state.subject, "network recovered, retrying operation");
                        run.report.resumed = Some(Resume {
                            at: Instant::now(),
                            monotonic_ns: crate::clock::monotonic_ns(),
                            verdict,
                        });
                        after_outage = true;
                        last = Some(error);
                        continue;
                    }
                    Ok(WaitOutcome::TimedOut(_)) | Err(Interrupt::Deadline) => {
                        return Err(run.interrupted(Interrupt::Deadline, Some(error)))
                    }
                    Err(Interrupt::Cancelled) => {
                        return Err(run.interrupted(Interrupt::Cancelled, Some(error)))
                    }
                    Ok(WaitOutcome::SourceClosed) => {
                        // Count the attempt after all and back off as if there were no source.
                        run.report.attempts += 1;
                        run.unavailable(state, &"the state source closed during the wait");
                    }
                }
            }

            let degraded = health == Some(Health::Degraded);
            let Some(scheduled) = schedule.next_delay() else {
                tracing::debug!(attempt = attempt.number, %error, "giving up: no attempts left");
                return Err(run.give_up(GiveUp::AttemptsExhausted, Some(error)));
            };
            let degraded_policy = &self.policy.degraded;
            let delay = match class {
                ErrorClass::RetryAfter(delay) => delay,
                _ if degraded => scheduled.mul_f32(degraded_policy.delay_factor.max(0.0)),
                _ => scheduled,
            };
            if degraded && degraded_policy.switch_mirror {
                run.report.mirror += 1;
                switch_mirror = true;
            }
            if let Some(deadline) = run.deadline {
                if Instant::now() + delay >= deadline {
                    tracing::debug!(
                        attempt = attempt.number,
                        delay_ms = delay.as_millis(),
                        "giving up: the next attempt would start after the deadline"
                    );
                    return Err(run.interrupted(Interrupt::Deadline, Some(error)));
                }
            }
            let cost = if class == ErrorClass::Timeout {
                TIMEOUT_COST
            } else {
                RETRY_COST
            };
            if !self.budget.try_spend(cost) {
                tracing::debug!(
                    attempt = attempt.number,
                    cost,
                    available = self.budget.available(),
                    "giving up: the retry budget is spent"
                );
                return Err(run.give_up(GiveUp::BudgetExhausted, Some(error)));
            }
            run.report.budget_spent += cost;
            tracing::debug!(
                attempt = attempt.number,
                delay_ms = delay.as_millis(),
                ?class,
                health = health.map(Health::as_str),
                mirror = run.report.mirror,
                %error,
                "retrying after a delay"
            );
            if let Err(interrupt) = run.guard(tokio::time::sleep(delay)).await {
                return Err(run.interrupted(interrupt, Some(error)));
            }
            run.report.backoff_wait += delay;
            last = Some(error);
        }
    }
}

impl<'a> Run<'a> {
    /// Runs `future` unless the caller cancels or the deadline passes first.
    async fn guard<F: Future>(&self, future: F) -> Result<F::Output, Interrupt> {
        let cancelled = async {
            match &self.retryer.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let expired = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cancelled => Err(Interrupt::Cancelled),
            () = expired => Err(Interrupt::Deadline),
            output = future => Ok(output),
        }
    }

    /// The subject's verdict now, with the watch it came from; `None` for plain backoff (no
    /// source, source unreachable, subject unknown to it).
    async fn network(&self) -> Result<Option<(&'a Watched, StateWatch, Verdict)>, Interrupt> {
        let retryer: &'a Retryer = self.retryer;
        let Some(state) = retryer.state.as_ref() else {
            return Ok(None);
        };
        let watch = match self.guard(state.source.watch()).await? {
            Ok(watch) => watch,
            Err(error) => {
                self.unavailable(state, &error);
                return Ok(None);
            }
        };
        if state.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(subject = %state.subject, "state source reachable again");
        }
        match watch.verdict(&state.subject) {
            Some(verdict) => Ok(Some((state, watch, verdict))),
            None => {
                tracing::debug!(subject = %state.subject, "the state source does not know the subject: plain backoff");
                Ok(None)
            }
        }
    }

    /// Logs, once until the source is back, that retries go on without network state.
    fn unavailable(&self, state: &Watched, error: &dyn fmt::Display) {
        if !state.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                subject = %state.subject,
                %error,
                "state source unavailable: retrying with plain backoff, blind to the network"
            );
        }
    }

    async fn wait_for_up(
        &mut self,
        watch: &mut StateWatch,
        state: &Watched,
    ) -> Result<WaitOutcome, Interrupt> {
        /// A wait without a deadline still needs a timeout; the guard's deadline is the real one.
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let timeout = self
            .deadline
            .map_or(FOREVER, |d| d.saturating_duration_since(Instant::now()));
        let began = Instant::now();
        self.report.outages += 1;
        let outcome = self
            .guard(watch.wait_while_down(&state.subject, timeout))
            .await;
        self.report.network_wait += began.elapsed();
        outcome
    }

    fn finish(&mut self) -> RetryReport {
        let mut report = std::mem::take(&mut self.report);
        report.elapsed = self.started.elapsed();
        report
    }

    fn give_up<E>(&mut self, reason: GiveUp, cause: Option<E>) -> RetryError<E> {
        RetryError {
            reason,
            report: self.finish(),
            cause,
        }
    }

    fn interrupted<E>(&mut self, interrupt: Interrupt, cause: Option<E>) -> RetryError<E> {
        let reason = match interrupt {
            Interrupt::Cancelled => GiveUp::Cancelled,
            Interrupt::Deadline => {
                GiveUp::Deadline(self.retryer.policy.deadline.unwrap_or(Duration::MAX))
            }
        };
        tracing::debug!(?reason, "run ended");
        self.give_up(reason, cause)
    }
}
