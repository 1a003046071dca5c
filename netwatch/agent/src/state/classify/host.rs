//! The host's verdict, from its default-route links and its endpoints.

use std::fmt;

use crate::state::{EndpointStatus, Health, LinkStatus, Verdict};

use super::Assessment;

pub fn assess<'a>(
    links: impl Iterator<Item = &'a LinkStatus>,
    endpoints: impl Iterator<Item = &'a EndpointStatus>,
) -> Assessment {
    let uplinks: Vec<&LinkStatus> = links.filter(|l| l.default_route).collect();
    if uplinks.is_empty() {
        return Assessment::new(Health::Down, "no default route");
    }
    let best = uplinks
        .iter()
        .map(|l| l.verdict.health)
        .min_by_key(|h| rank(*h))
        .unwrap_or(Health::Unknown);
    let mut assessment = match best {
        Health::Down => {
            let mut a = Assessment::new(Health::Down, "every link with a default route is down");
            a.reasons
                .extend(uplinks.iter().map(|l| because(&l.name, &l.verdict)));
            return a;
        }
        Health::Unknown => Assessment::new(
            Health::Unknown,
            "no traffic seen on the default-route links: unverified",
        ),
        Health::Degraded => {
            Assessment::new(Health::Degraded, "the default-route links are degraded")
        }
        Health::Up => Assessment::new(Health::Up, "a default-route link is up"),
    };
    for link in uplinks.iter().filter(|l| l.verdict.health != best) {
        if hurts(link.verdict.health) {
            assessment.worsen(Health::Degraded);
        }
        let who = format!("{} {}", link.name, link.verdict.health);
        assessment.reasons.push(because(who, &link.verdict));
    }
    if best != Health::Up {
        let alike = uplinks.iter().filter(|l| l.verdict.health == best);
        assessment
            .reasons
            .extend(alike.map(|l| because(&l.name, &l.verdict)));
    }
    for endpoint in endpoints.filter(|e| hurts(e.verdict.health)) {
        assessment.worsen(Health::Degraded);
        let who = format!("endpoint {} {}", endpoint.name, endpoint.verdict.health);
        assessment.reasons.push(because(who, &endpoint.verdict));
    }
    assessment
}

/// One of the host's reasons: who, then the reasons of its own verdict.
fn because(who: impl fmt::Display, verdict: &Verdict) -> String {
    format!("{who}: {}", verdict.reasons.join("; "))
}

/// Whether a link or endpoint in this health makes the host Degraded at least.
fn hurts(health: Health) -> bool {
    matches!(health, Health::Down | Health::Degraded)
}

/// Order of preference among links: an Up link makes the host usable.
fn rank(health: Health) -> u8 {
    match health {
        Health::Up => 0,
        Health::Degraded => 1,
        Health::Unknown => 2,
        Health::Down => 3,
    }
}
