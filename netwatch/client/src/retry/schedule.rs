//! The delays between counted attempts: backon's exponential schedule, with the jitter
//! netwatch offers drawn on top.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::policy::{Jitter, RetryPolicy};

/// One run's schedule. backon counts the retries and grows the delay; jitter is ours because
/// backon's own only adds up to `d` (a delay in [d, 2d)), which is none of full, equal or
/// decorrelated.
pub(crate) struct Schedule {
    backoff: ExponentialBackoff,
    jitter: Jitter,
    initial: Duration,
    max: Duration,
    /// The last delay drawn, for decorrelated jitter.
    previous: Duration,
    rng: fastrand::Rng,
}

impl Schedule {
    pub(crate) fn new(policy: &RetryPolicy, rng: fastrand::Rng) -> Self {
        let max = policy.max_delay.max(policy.initial_delay);
        let backoff = ExponentialBuilder::new()
            .with_min_delay(policy.initial_delay)
            .with_max_delay(max)
            .with_factor(policy.multiplier.max(1.0))
            .with_max_times(policy.max_attempts.max(1) as usize - 1)
            .build();
        Self {
            backoff,
            jitter: policy.jitter,
            initial: policy.initial_delay,
            max,
            previous: policy.initial_delay,
            rng,
        }
    }

    /// The delay before the next retry, or `None` once the attempts are used up.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        let d = self.backoff.next()?;
        let delay = match self.jitter {
            Jitter::None => d,
            Jitter::Full => self.between(Duration::ZERO, d),
            Jitter::Equal => d / 2 + self.between(Duration::ZERO, d / 2),
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).min(self.max);
                self.between(self.initial.min(high), high)
            }
        };
        self.previous = delay;
        Some(delay)
    }

    /// Uniform in [low, high], at nanosecond resolution.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
        low + Duration::from_nanos(self.rng.u64(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAWS: usize = 10_000;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
            ..RetryPolicy::default()
        }
    }

    /// The un-jittered delays: 100 ms doubling, capped at 2 s, 5 retries for 6 attempts.
    fn plain() -> Vec<Duration> {
        [100, 200, 400, 800, 1600]
            .map(Duration::from_millis)
            .to_vec()
    }

    fn delays(jitter: Jitter, seed: u64) -> Vec<Duration> {
        let mut schedule = Schedule::new(&policy(jitter), fastrand::Rng::with_seed(seed));
        std::iter::from_fn(|| schedule.next_delay()).collect()
    }

    #[test]
    fn no_jitter_is_backons_exponential_schedule_with_one_delay_per_retry() {
        // backon multiplies in f32: 100 ms doubled is 200.000003 ms.
        let got = delays(Jitter::None, 1);
        assert_eq!(got.len(), plain().len());
        for (got, want) in got.iter().zip(plain()) {
            assert!(
                got.abs_diff(want) < Duration::from_micros(1),
                "{got:?} for {want:?}"
            );
        }
        let one = RetryPolicy {
            max_attempts: 1,
            ..policy(Jitter::None)
        };
        assert_eq!(Schedule::new(&one, fastrand::Rng::new()).next_delay(), None);
    }

    /// The delays jitter is drawn from, exactly as backon computes them.
    fn exact() -> Vec<Duration> {
        delays(Jitter::None, 0)
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_delay() {
        let mut spread = (Duration::MAX, Duration::ZERO);
        for seed in 0..DRAWS as u64 {
            for (i, (got, d)) in delays(Jitter::Full, seed)
                .into_iter()
                .zip(exact())
                .enumerate()
            {
                assert!(got <= d, "full jitter drew {got:?} for {d:?}");
                if i == 4 {
                    spread = (spread.0.min(got), spread.1.max(got));
                }
            }
        }
        // The draws cover the range rather than sitting at one end.
        assert!(spread.0 < Duration::from_millis(100) && spread.1 > Duration::from_millis(1500));
    }

    #[test]
    fn equal_jitter_stays_within_half_and_the_whole_delay() {
        for seed in 0..DRAWS as u64 {
            for (got, d) in delays(Jitter::Equal, seed).into_iter().zip(exact()) {
                assert!(
                    d / 2 <= got && got <= d,
                    "equal jitter drew {got:?} for {d:?}"
                );
            }
        }
    }

    #[test]
    fn decorrelated_jitter_stays_between_the_base_and_three_times_the_last_capped() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut reached_cap = false;
        for seed in 0..DRAWS as u64 {
            let mut previous = base;
            for got in delays(Jitter::Decorrelated, seed) {
                let high = (previous * 3).min(cap);
                assert!(
                    base <= got && got <= high,
                    "decorrelated jitter drew {got:?} after {previous:?}"
                );
                reached_cap |= got > cap - Duration::from_millis(100);
                previous = got;
            }
        }
        assert!(reached_cap, "no draw came near the cap in {DRAWS} runs");
    }
}
