//! The one clock every timestamp of the bench comes from: CLOCK_MONOTONIC, which the agent's
//! `since_ns` and the sysfs poller children use too (no time namespaces here).

use std::time::Duration;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Nanoseconds as a Duration (negative spans count as zero).
pub fn ns(span: i64) -> Duration {
    Duration::from_nanos(span.max(0) as u64)
}

/// A small deterministic-per-run pseudo-random source (xorshift64*), for jitter between
/// rounds: faults must land at random phases of the pollers and the probe loop.
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        Jitter(now_ns() as u64 | 1)
    }

    /// A duration drawn uniformly from `low..high`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let draw = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = high.saturating_sub(low).as_nanos() as u64;
        low + Duration::from_nanos(if span == 0 { 0 } else { draw % span })
    }
}
