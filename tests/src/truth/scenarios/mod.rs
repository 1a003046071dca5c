//! The fault scenarios of the truth suite. Each builds its own namespaces and agent, steps
//! through a fault and its recovery, and returns how every watched subject fared.

mod endpoint;
mod gateway;
mod link;
mod loss;
mod route;
mod storm;

use std::net::IpAddr;
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

pub use endpoint::{blackhole, one_way_blackhole, refused_port};
pub use gateway::{gateway_gone, idle_host};
pub use link::{carrier_recovery, xdp_less_interface};
pub use loss::random_loss;
pub use route::{failover, link_bounce};
pub use storm::{netlink_storm, StormReport};

use super::Outcome;
use crate::agent::Agent;
use crate::netns::NetNs;
use crate::verdicts::{health, Subscription};

/// Loading the programs takes a moment; this only bounds a wait that failed.
const STARTUP: Duration = Duration::from_secs(30);
/// How long a step may take to reach its verdicts, at most (then it is judged as it is).
const LIMIT: Duration = Duration::from_secs(15);
/// How long verdicts are watched once right, for flip-flops.
const SETTLE: Duration = Duration::from_secs(4);

/// Targets, from the issue: Down within 1 s for link and route faults, 3 s for a blackhole
/// or a refused port, 10 s for a gateway gone; Degraded within 3 s at 5% loss; Up within 1 s
/// of recovery.
pub const LINK_FAULT: Duration = Duration::from_secs(1);
pub const PATH_FAULT: Duration = Duration::from_secs(3);
pub const GATEWAY_GONE: Duration = Duration::from_secs(10);
pub const LOSS: Duration = Duration::from_secs(3);
pub const RECOVERY: Duration = Duration::from_secs(1);

/// A scenario: its name, and what runs it.
pub type Named = (&'static str, fn() -> Vec<Outcome>);

/// Every scenario of the suite, in the order the bench runs them.
pub fn all() -> Vec<Named> {
    vec![
        ("link bounce", link_bounce),
        ("failover", failover),
        ("refused port", refused_port),
        ("1% loss", || random_loss(1)),
        ("5% loss", || random_loss(5)),
        ("gateway gone", gateway_gone),
        ("blackhole", blackhole),
        ("one-way blackhole v4", || one_way_blackhole(false)),
        ("one-way blackhole v6", || one_way_blackhole(true)),
        ("carrier loss and back", carrier_recovery),
        ("idle host", idle_host),
        ("interface without XDP", xdp_less_interface),
    ]
}

/// Starts an agent on `ns` with `config`, and subscribes to it.
fn watch(ns: &NetNs, config: &str) -> (Agent, Subscription) {
    let agent = Agent::start_with(ns, &[], Some(config));
    agent.wait_for("agent ready", |_| true, STARTUP);
    let sub = Subscription::connect(agent.socket());
    (agent, sub)
}

/// Waits until every subject is `wanted`; panics with the history if not within 20 s.
fn settle_all(sub: &Subscription, what: &str, subjects: &[Subject], wanted: Health) {
    let subjects = subjects.to_vec();
    sub.wait_for(
        what,
        move |s| {
            subjects
                .iter()
                .all(|subject| health(s, subject) == Some(wanted))
        },
        Duration::from_secs(20),
    );
}

/// `[[endpoint]] name = NAME` at `addr:port`.
fn endpoint_config(name: &str, addr: IpAddr, port: u16) -> String {
    let target = match addr {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    format!("[[endpoint]]\nname = \"{name}\"\naddress = \"{target}\"\n")
}
