//! The verdict's side in the agent: the observations it is judged from, the thresholds and
//! the classifier; and, from the client crate, the state that is served.

mod classify;
mod observations;
mod thresholds;

pub use classify::{Assessment, Classifier};
pub use netwatch_client::state::*;
pub use observations::{
    DestStats, EndpointObservation, GatewayObservation, IfaceRx, IfaceTx, LinkObservation,
    Observations, PeerStats, ProbeResult,
};
pub use thresholds::Thresholds;
