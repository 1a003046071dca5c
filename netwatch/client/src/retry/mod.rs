//! Owns network-aware retrying for any async program: a failure while the network is Down
//! costs no attempt and waits until it is no longer Down, then retries at once; Degraded stretches delays or asks
//! for another mirror; without a state source it is plain backoff. See `docs/retry.md`.
//!
//! ```no_run
//! use netwatch_client::retry::{Retryer, RetryPolicy, AgentSource};
//! use netwatch_client::state::Subject;
//!
//! # async fn fetch(_mirror: u32) -> std::io::Result<Vec<u8>> { Ok(Vec::new()) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let retryer = Retryer::new(RetryPolicy::default())
//!     .with_state(AgentSource::default_socket(), Subject::Host);
//! let (body, report) = retryer.run(|attempt| fetch(attempt.mirror)).await?;
//! println!("{} bytes after {} attempts", body.len(), report.attempts);
//! # Ok(()) }
//! ```
//!
//! The schedule is backon's `ExponentialBackoff` (initial delay, multiplier, cap, number of
//! retries), driven by hand as an iterator. backon's `Retryable` loop is not used, because
//! it cannot express what this module is for: a failure that does not consume an attempt, a
//! wait on network state between attempts that a state change ends early, a delay replaced by
//! Retry-After, and a shared budget. Nor are its jitter (which adds up to one delay, giving
//! [d, 2d), none of full, equal or decorrelated) or its sleepers (tokio's timer is used, so
//! tests run on the paused clock).

mod budget;
mod classify;
mod policy;
mod report;
mod run;
mod schedule;
mod source;
#[cfg(test)]
mod tests;

use std::{
    error::Error,
    fmt,
    future::Future,
    sync::{atomic::AtomicBool, Arc},
};

use tokio_util::sync::CancellationToken;

pub use budget::{RetryBudget, CAPACITY, RETRY_COST, SUCCESS_REWARD, TIMEOUT_COST};
pub use classify::{classify, retry_after, ErrorClass, HttpStatus};
pub use policy::{DegradedPolicy, Jitter, RetryPolicy};
pub use report::{Attempt, GiveUp, Resume, RetryError, RetryReport};
pub use source::{AgentSource, SourceUnavailable, StateSource};

use crate::state::Subject;

/// Runs an operation until it succeeds or the policy says stop. Cheap to clone; clones share
/// the state source and budget.
#[derive(Clone)]
pub struct Retryer {
    policy: RetryPolicy,
    budget: RetryBudget,
    state: Option<Watched>,
    cancel: Option<CancellationToken>,
    seed: Option<u64>,
}

/// A state source and the subject whose verdict decides.
#[derive(Clone)]
struct Watched {
    source: Arc<dyn StateSource>,
    subject: Subject,
    /// Set once "state source unavailable" has been logged; cleared when it is back.
    warned: Arc<AtomicBool>,
}

impl Retryer {
    /// Plain backoff under `policy`, drawing on the process-wide budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            budget: RetryBudget::global(),
            state: None,
            cancel: None,
            seed: None,
        }
    }

    /// Consults `source` about `subject` (the host, or the endpoint the operation talks to)
    /// after each failure.
    pub fn with_state(mut self, source: impl StateSource + 'static, subject: Subject) -> Self {
        self.state = Some(Watched {
            source: Arc::new(source),
            subject,
            warned: Arc::new(AtomicBool::new(false)),
        });
        self
    }

    /// Uses `budget` instead of the process-wide one (a test, or a class of operations that
    /// must not starve the rest).
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Ends runs as soon as `token` is cancelled, whatever they are doing.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Draws jitter from a generator seeded with `seed`, so delays repeat run after run.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Calls `operation` until it succeeds or the run gives up, classifying failures by
    /// their source chain ([`classify`]).
    pub async fn run<T, E, F, Fut>(&self, operation: F) -> Result<(T, RetryReport), RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Error + 'static,
    {
        self.run_with(|e: &E| classify(e), operation).await
    }
}

impl fmt::Debug for Retryer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retryer")
            .field("policy", &self.policy)
            .field("budget", &self.budget)
            .field("subject", &self.state.as_ref().map(|s| &s.subject))
            .field("cancellable", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}
