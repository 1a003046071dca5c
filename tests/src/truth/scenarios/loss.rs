//! Random loss under a live TCP flow: 1% is within what healthy paths see (Up), 5% is
//! Degraded for as long as it lasts, and Up within a second of its end.

use std::net::IpAddr;
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

use super::{endpoint_config, settle_all, watch, LIMIT, LOSS, RECOVERY, SETTLE};
use crate::nft;
use crate::topology::Pair;
use crate::traffic::Pace;
use crate::truth::{Expect, Outcome, Phase};

pub fn random_loss(percent: u32) -> Vec<Outcome> {
    let scenario = format!("{percent}% loss");
    let pair = Pair::new();
    let port = 5431;
    let a = IpAddr::V4(pair.a_v4);
    let (_agent, sub) = watch(&pair.b, &endpoint_config("mirror", a, port));
    let _flow = pair.flow_to_a(
        port,
        // A busy flow (about 500 buffers a second): enough for the verdict to see within
        // a second that the loss has ended (a thin one waits out the loss window and the
        // hold, docs/verdict.md).
        Pace {
            chunk: 8 * 1024,
            every: Duration::from_millis(2),
            max_bytes: u64::MAX,
            max_time: Duration::from_secs(60),
        },
    );
    let link = Subject::Link(pair.b_if.clone());
    let endpoint = Subject::Endpoint("mirror".into());
    let subjects = [link.clone(), endpoint.clone()];
    settle_all(&sub, "link and endpoint up", &subjects, Health::Up);

    let expected = if percent >= 2 {
        Health::Degraded
    } else {
        Health::Up
    };
    let phase = Phase::begin(&scenario, "loss begins", &sub);
    nft::drop_randomly(&pair.a, "nwt_loss", pair.b_v4, percent * 10);
    let mut outcomes = phase.end(
        &[
            Expect::new(link.clone(), expected, LOSS),
            Expect::new(endpoint.clone(), expected, LOSS),
        ],
        LIMIT,
        Duration::from_secs(8),
    );
    let phase = Phase::begin(&scenario, "loss ends", &sub);
    nft::delete_table(&pair.a, "ip", "nwt_loss");
    outcomes.extend(phase.end(
        &[
            Expect::new(link, Health::Up, RECOVERY),
            Expect::new(endpoint, Health::Up, RECOVERY),
        ],
        LIMIT,
        SETTLE,
    ));
    outcomes
}
