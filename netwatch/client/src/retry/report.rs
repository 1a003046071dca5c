//! What a run tells its caller: each attempt's context, the figures of a finished run, and
//! the error when it gives up.

use std::{error::Error, fmt, time::Duration};

use tokio::time::Instant;

use crate::state::Verdict;

/// What the operation is told about the call it is making.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt's number, from 1. A call that failed while the network was Down did not
    /// count, so the call after the outage has the same number again.
    pub number: u32,
    /// Every call so far, this one included.
    pub call: u32,
    /// This call is the retry made the moment the network came back Up.
    pub after_outage: bool,
    /// Which mirror to use: 0 at first, advanced each time the Degraded policy asks for
    /// another. Take it modulo the number of mirrors the caller has.
    pub mirror: u32,
    /// `mirror` advanced for this call.
    pub switch_mirror: bool,
}

/// The figures of a run, returned with its result and inside its error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryReport {
    /// Attempts that counted against `max_attempts`.
    pub attempts: u32,
    /// Calls of the operation, also those that failed while the network was Down.
    pub calls: u32,
    /// From the start of the run to its end.
    pub elapsed: Duration,
    /// Time spent waiting for the network to come back Up.
    pub network_wait: Duration,
    /// Time spent in the delays between attempts.
    pub backoff_wait: Duration,
    /// How many times the run waited for the network.
    pub outages: u32,
    /// Tokens this run took from the retry budget.
    pub budget_spent: u32,
    /// The mirror the last call used (see [`Attempt::mirror`]).
    pub mirror: u32,
    /// The last time the run resumed because the network came back Up.
    pub resumed: Option<Resume>,
}

/// The moment a run resumed after an outage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// When the retry was started, on tokio's clock (paused in tests).
    pub at: Instant,
    /// The same moment in CLOCK_MONOTONIC nanoseconds, the clock of [`Verdict::since_ns`]:
    /// `monotonic_ns - verdict.since_ns` is how long after the agent judged the network Up
    /// the retry began. Real time even under a paused tokio clock.
    pub monotonic_ns: u64,
    /// The Up verdict that ended the wait.
    pub verdict: Verdict,
}

/// Why a run gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure was permanent: trying again cannot help.
    Permanent,
    /// Every attempt the policy allows failed.
    AttemptsExhausted,
    /// The process-wide retry budget had too few tokens left for another retry.
    BudgetExhausted,
    /// The deadline passed, or the next delay would have passed it.
    Deadline(Duration),
    /// The caller cancelled the run.
    Cancelled,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Permanent => {
                f.write_str("not retried: the failure is one that retrying cannot fix")
            }
            Self::AttemptsExhausted => f.write_str(
                "gave up: every attempt failed (the policy's max_attempts allows no more)",
            ),
            Self::BudgetExhausted => f.write_str(
                "gave up: the process's retry budget is spent, so many operations are failing \
                 at once; retries are allowed again as operations succeed",
            ),
            Self::Deadline(limit) => write!(
                f,
                "gave up: the run's deadline of {} passed",
                humantime::format_duration(*limit)
            ),
            Self::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// A run that gave up: why, its figures, and the last failure.
#[derive(Debug)]
pub struct RetryError<E> {
    pub reason: GiveUp,
    pub report: RetryReport,
    /// The last failure; `None` when the run ended (cancelled, deadline) before any failed.
    pub cause: Option<E>,
}

impl<E> RetryError<E> {
    pub fn is_cancelled(&self) -> bool {
        self.reason == GiveUp::Cancelled
    }

    pub fn into_cause(self) -> Option<E> {
        self.cause
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        write!(
            f,
            "{}: {} attempt{} in {}, {} of it waiting for the network",
            self.reason,
            r.attempts,
            if r.attempts == 1 { "" } else { "s" },
            millis(r.elapsed),
            millis(r.network_wait),
        )?;
        if let Some(cause) = &self.cause {
            write!(f, "; last failure: {cause}")?;
        }
        Ok(())
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A duration to the millisecond, for people ("1m 2s 345ms").
fn millis(d: Duration) -> impl fmt::Display {
    let rounded = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if rounded.is_zero() {
        "0s".to_string()
    } else {
        humantime::format_duration(rounded).to_string()
    }
}
