//! What a retryer may do: how many attempts, how far apart, for how long, and what a
//! Degraded network changes.

use std::time::Duration;

/// How a retryer spaces and bounds its attempts. Build one with struct update syntax:
/// `RetryPolicy { max_attempts: 3, ..RetryPolicy::default() }`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, counting only those made while the network was
    /// not Down. At least 1 (0 is taken as 1).
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter.
    pub initial_delay: Duration,
    /// No delay from the schedule exceeds this (a Retry-After or Degraded stretch may).
    pub max_delay: Duration,
    /// Each delay is the previous one times this, up to `max_delay`.
    pub multiplier: f32,
    pub jitter: Jitter,
    /// The whole run, attempts and waits for the network included, ends by then (an attempt
    /// still running is dropped); `None` for no limit, when a Down network is waited for as
    /// long as it stays Down.
    pub deadline: Option<Duration>,
    pub degraded: DegradedPolicy,
}

impl Default for RetryPolicy {
    /// The original design's schedule (5 attempts, 1 s doubling to 30 s) with full jitter,
    /// and a 10 minute deadline: attempts are not spent while the network is Down, so the
    /// deadline is what bounds an outage; 10 minutes outlasts a link flap, a Wi-Fi or VPN
    /// reconnect and a DHCP renewal, and still lets a stuck job fail within the hour.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: Jitter::Full,
            deadline: Some(Duration::from_secs(600)),
            degraded: DegradedPolicy::default(),
        }
    }
}

/// How a delay `d` from the schedule is randomised, so that clients that failed together do
/// not retry together (see AWS's "Exponential Backoff And Jitter").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `d`: for tests and for a single client.
    None,
    /// Uniform in [0, d]: the least load on a recovering server (gRPC, AWS standard mode).
    Full,
    /// d/2 plus uniform in [0, d/2]: never much shorter than the schedule.
    Equal,
    /// Uniform in [initial_delay, 3 × previous delay], capped at `max_delay`: each delay
    /// grows from the last one drawn rather than from the attempt number, so `multiplier`
    /// does not apply.
    Decorrelated,
}

/// What changes while the subject is Degraded (working, but losing packets or slow): the
/// failure counts as an attempt, as on an Up network, and then:
#[derive(Clone, Debug, PartialEq)]
pub struct DegradedPolicy {
    /// Every delay is stretched by this factor, so that a struggling network is not met with
    /// more traffic. 1.0 leaves delays as they are.
    pub delay_factor: f32,
    /// Ask the caller to use another mirror for the next attempt: [`Attempt::mirror`]
    /// advances and [`Attempt::switch_mirror`] is set.
    ///
    /// [`Attempt::mirror`]: super::Attempt::mirror
    /// [`Attempt::switch_mirror`]: super::Attempt::switch_mirror
    pub switch_mirror: bool,
}

impl Default for DegradedPolicy {
    /// Delays doubled, same mirror: halving the retry rate roughly halves what retries add to
    /// a lossy link, and only the caller knows whether it has another mirror.
    fn default() -> Self {
        Self {
            delay_factor: 2.0,
            switch_mirror: false,
        }
    }
}
