//! The retry budget: a token bucket shared by every retryer in the process, after AWS's retry
//! quota, so that when much is failing at once (a Degraded network, a sick service) retries
//! stop instead of multiplying the load.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc, OnceLock,
};

/// Tokens in a full bucket (AWS's `RETRY_QUOTA`): 100 retries, or 50 timeouts, in a row.
pub const CAPACITY: u32 = 500;
/// What a retry after an ordinary failure costs.
pub const RETRY_COST: u32 = 5;
/// What a retry after a timeout costs: a timeout held a connection for its whole length.
pub const TIMEOUT_COST: u32 = 10;
/// What a success gives back.
pub const SUCCESS_REWARD: u32 = 1;

/// A shared token bucket. Clones share the tokens.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    inner: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: AtomicU32,
    capacity: u32,
}

impl RetryBudget {
    /// A bucket of its own, full, holding `capacity` tokens.
    pub fn new(capacity: u32) -> Self {
        Self {
            inner: Arc::new(Bucket {
                tokens: AtomicU32::new(capacity),
                capacity,
            }),
        }
    }

    /// The process-wide bucket ([`CAPACITY`] tokens) that retryers use unless given another.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<RetryBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| Self::new(CAPACITY)).clone()
    }

    /// Tokens left.
    pub fn available(&self) -> u32 {
        self.inner.tokens.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }

    /// Takes `cost` tokens if there are that many; false (and nothing taken) if not.
    pub(crate) fn try_spend(&self, cost: u32) -> bool {
        self.inner
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(cost)
            })
            .is_ok()
    }

    /// Gives back [`SUCCESS_REWARD`], up to the capacity.
    pub(crate) fn reward_success(&self) {
        let capacity = self.inner.capacity;
        let _ = self
            .inner
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < capacity).then(|| (t + SUCCESS_REWARD).min(capacity))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_stops_at_an_empty_bucket_and_successes_refill_up_to_capacity() {
        let budget = RetryBudget::new(12);
        assert!(budget.try_spend(RETRY_COST));
        assert!(budget.try_spend(RETRY_COST));
        assert!(
            !budget.try_spend(RETRY_COST),
            "2 tokens cannot pay for a retry"
        );
        assert_eq!(budget.available(), 2);
        for _ in 0..20 {
            budget.clone().reward_success();
        }
        assert_eq!(budget.available(), 12);
    }

    #[test]
    fn the_global_budget_is_one_bucket() {
        assert_eq!(RetryBudget::global().capacity(), CAPACITY);
        assert!(Arc::ptr_eq(
            &RetryBudget::global().inner,
            &RetryBudget::global().inner
        ));
    }
}
