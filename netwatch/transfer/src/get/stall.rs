//! A request that receives nothing for a while is abandoned. When a mirror's path is cut while
//! its answers are under way, and the get has no request left to send it, nothing of the get's
//! can time out in TCP (retransmits, the agent's evidence of a blackhole, come from the side
//! that sends), so no verdict can say so: the get watches its own progress.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// When a request last received anything.
pub struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last bytes.
    last_ms: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Bytes arrived.
    pub fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has arrived for `limit`.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_silence_as_long_as_the_limit_is_a_stall() {
        let progress = Progress::new();
        let limit = Duration::from_secs(10);
        let stalled = progress.stalled(limit);
        tokio::pin!(stalled);
        for _ in 0..5 {
            tokio::select! {
                () = &mut stalled => panic!("bytes arrived every 6 s, yet a stall"),
                () = tokio::time::sleep(Duration::from_secs(6)) => progress.touch(),
            }
        }
        let silent_from = Instant::now();
        stalled.await;
        assert_eq!(silent_from.elapsed(), limit);
    }
}
