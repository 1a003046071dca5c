//! A long healthy run: a steady flow, with or without a little random loss, and every
//! verdict that was not Up counted. Healthy is Up, all the time.

use std::net::IpAddr;
use std::time::Duration;

use netwatch_client::state::{Health, Subject};

use crate::agent::Agent;
use crate::nft;
use crate::topology::Pair;
use crate::traffic::Pace;
use crate::verdicts::Subscription;

/// What a soak saw.
#[derive(Clone, Debug)]
pub struct SoakReport {
    pub duration: Duration,
    /// Random loss applied, in percent.
    pub loss_percent: f64,
    /// Verdicts other than Up served after the start, per subject.
    pub not_up: Vec<(Subject, usize)>,
    /// Those verdicts, for people.
    pub examples: Vec<String>,
    /// Bytes the flow moved.
    pub sent: u64,
}

/// Runs a flow for `duration` under `loss_percent` random loss (0 for none), with the link
/// and the endpoint it goes to watched.
pub fn soak(duration: Duration, loss_percent: f64) -> SoakReport {
    let pair = Pair::new();
    pair.default_route_via_a();
    let port = 5471;
    let a = IpAddr::V4(pair.a_v4);
    let config = format!("[[endpoint]]\nname = \"mirror\"\naddress = \"{a}:{port}\"\n");
    let agent = Agent::start_with(&pair.b, &[], Some(&config));
    agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
    let sub = Subscription::connect(agent.socket());
    let flow = pair.flow_to_a(
        port,
        Pace {
            max_bytes: u64::MAX,
            max_time: duration + Duration::from_secs(30),
            ..Pace::default()
        },
    );
    let subjects = [
        Subject::Host,
        Subject::Link(pair.b_if.clone()),
        Subject::Endpoint("mirror".into()),
    ];
    let all = subjects.clone();
    sub.wait_for(
        "everything up",
        move |s| {
            all.iter()
                .all(|x| crate::verdicts::health(s, x) == Some(Health::Up))
        },
        Duration::from_secs(20),
    );
    if loss_percent > 0.0 {
        // In thousandths, so 0.1% is expressible.
        let per_mille = (loss_percent * 10.0).round() as u32;
        nft::drop_randomly(&pair.a, "nwt_soak", pair.b_v4, per_mille);
    }
    let mark = sub.mark();
    std::thread::sleep(duration);
    let seen = sub.since(mark);
    let report = flow.stop();
    let mut examples = Vec::new();
    let not_up = subjects
        .iter()
        .map(|subject| {
            let bad: Vec<_> = seen
                .iter()
                .filter(|s| s.health(subject) != Some(Health::Up))
                .collect();
            for s in bad.iter().take(3) {
                examples.push(format!(
                    "{subject} {}: {}",
                    s.health(subject).map_or("none", Health::as_str),
                    s.reasons(subject)
                ));
            }
            (subject.clone(), bad.len())
        })
        .collect();
    SoakReport {
        duration,
        loss_percent,
        not_up,
        examples,
        sent: report.sent,
    }
}
