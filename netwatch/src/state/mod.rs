//! Owns the verdict: the observations it is judged from, the classifier, and the state
//! that is served to consumers (Up, Degraded, Down or Unknown per link, endpoint and host).

mod classify;
mod observations;
mod thresholds;
mod verdict;
mod watch;

pub use classify::{Assessment, Classifier};
pub use observations::{
    DestStats, EndpointObservation, GatewayObservation, IfaceRx, IfaceTx, LinkObservation,
    Observations, PeerStats, ProbeResult,
};
pub use thresholds::Thresholds;
pub use verdict::{EndpointStatus, Health, LinkStatus, NetworkState, Subject, Verdict};
pub use watch::{StateWatch, WaitOutcome};
