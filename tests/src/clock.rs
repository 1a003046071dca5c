//! The one clock every timestamp of the tests and the bench comes from: netwatch's own
//! (CLOCK_MONOTONIC), which the agent's `since_ns` and the sysfs poller children use too (no
//! time namespaces here). Signed, so spans between two readings subtract either way.

use std::time::Duration;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn now_ns() -> i64 {
    netwatch_client::clock::monotonic_ns() as i64
}

/// Nanoseconds as a Duration (negative spans count as zero).
pub fn ns(span: i64) -> Duration {
    Duration::from_nanos(span.max(0) as u64)
}
