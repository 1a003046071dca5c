//! The verdict as consumers see it: the state the agent serves (Up, Degraded, Down or
//! Unknown per link, endpoint and host), and `StateWatch`, the one way to follow it.

mod verdict;
mod watch;

pub use verdict::{EndpointStatus, Health, LinkStatus, NetworkState, Subject, Verdict};
pub use watch::{StateWatch, WaitOutcome};
