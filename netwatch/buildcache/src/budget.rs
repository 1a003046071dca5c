//! The memory entries may take at once: request bodies being stored and mirrors' answers
//! being read both wait for their share here, so a flood of large PUTs, or mirrors that
//! answer every lookup with the largest entry allowed, wait instead of taking the host's
//! memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Entries held in memory at once, in MiB, unless one entry is larger.
const BUDGET_MIB: u64 = 1024;

/// Shares of the memory budget, in whole MiB.
#[derive(Clone)]
pub struct Budget {
    shares: Arc<Semaphore>,
    total: u32,
}

/// A share of the budget, given back when dropped.
pub type Room = OwnedSemaphorePermit;

impl Budget {
    /// Room for `BUDGET_MIB`, and always for one entry of `max_entry` bytes.
    pub fn for_entries(max_entry: u64) -> Self {
        Self::of_mib(BUDGET_MIB.max(mib(max_entry) + 1))
    }

    pub fn of_mib(mib: u64) -> Self {
        let total = u32::try_from(mib.min(Semaphore::MAX_PERMITS as u64)).unwrap_or(u32::MAX);
        Self {
            shares: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` fit. At most the whole budget is waited for, so a caller that asks
    /// for more (entries are refused above the size the budget was made for) still proceeds.
    pub async fn room(&self, bytes: u64) -> Room {
        let wanted = u32::try_from(mib(bytes))
            .unwrap_or(u32::MAX)
            .min(self.total);
        Arc::clone(&self.shares)
            .acquire_many_owned(wanted)
            .await
            .expect("the budget is never closed")
    }
}

/// Whole MiB, rounded up (at least one).
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn room_waits_until_shares_are_given_back() {
        let budget = Budget::of_mib(4);
        let first = budget.room(3 << 20).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.room(2 << 20).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(second.num_permits(), 2);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_waits_for_all_of_it_not_for_ever() {
        let budget = Budget::of_mib(2);
        assert_eq!(budget.room(10 << 20).await.num_permits(), 2);
        // Bytes round up to whole MiB, and nothing is free.
        assert_eq!(budget.room(1).await.num_permits(), 1);
        assert_eq!(mib(0), 1);
        assert_eq!(mib((1 << 20) + 1), 2);
    }
}
