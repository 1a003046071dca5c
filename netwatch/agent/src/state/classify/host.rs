//! The host's verdict, from its default-route links and its endpoints.

use crate::state::{EndpointStatus, Health, LinkStatus};

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
            for link in &uplinks {
                a.reasons.push(format!(
                    "{}: {}",
                    link.name,
                    link.verdict.reasons.join("; ")
                ));
            }
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
        if matches!(link.verdict.health, Health::Down | Health::Degraded) {
            assessment.worsen(Health::Degraded);
        }
        assessment.reasons.push(format!(
            "{} {}: {}",
            link.name,
            link.verdict.health,
            link.verdict.reasons.join("; ")
        ));
    }
    if best != Health::Up {
        for link in uplinks.iter().filter(|l| l.verdict.health == best) {
            assessment.reasons.push(format!(
                "{}: {}",
                link.name,
                link.verdict.reasons.join("; ")
            ));
        }
    }
    for endpoint in endpoints {
        if matches!(endpoint.verdict.health, Health::Down | Health::Degraded) {
            assessment.worsen(Health::Degraded);
            assessment.reasons.push(format!(
                "endpoint {} {}: {}",
                endpoint.name,
                endpoint.verdict.health,
                endpoint.verdict.reasons.join("; ")
            ));
        }
    }
    assessment
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
