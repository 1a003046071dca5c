//! Named network profiles for the build scenario, built from what this kernel has: tbf caps
//! the rate (on each mirror's egress), the bench's delay line in front of each nginx adds
//! the round trip (this kernel has no netem; the line delays data, not TCP handshakes), and
//! nftables drops packets at random both ways on each mirror's link.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};

use super::super::transfer::{delay::DelayProxy, proxy::Forwarder};
use crate::{
    build_site::{BuildSite, MirrorPort, PORT},
    nft,
};

/// Where each mirror's delay line listens (nginx is on 80).
const PROXY_PORT: u16 = 8081;

/// One profile: what a build host's path to its mirrors is like.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    pub rate_bits: u64,
    pub one_way: Duration,
    pub loss_per_mille: u32,
    pub like: &'static str,
}

impl Profile {
    pub fn rtt(&self) -> Duration {
        self.one_way * 2
    }

    /// The server's flags under this profile: a miss deadline the round trip fits in twice
    /// (150 ms plus two round trips: a build user on a far link would raise it so), and a
    /// hedge that waits a round trip before asking the next mirror.
    pub fn server_flags(&self) -> Vec<String> {
        let deadline = Duration::from_millis(150) + self.rtt() * 2;
        let hedge = Duration::from_millis(40) + self.rtt();
        vec![
            "--miss-deadline".to_string(),
            format!("{}ms", deadline.as_millis()),
            "--hedge-after".to_string(),
            format!("{}ms", hedge.as_millis()),
        ]
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} Mbit/s, {} ms round trip, {:.1}% loss each way ({})",
            self.name,
            self.rate_bits / 1_000_000,
            self.rtt().as_millis(),
            self.loss_per_mille as f64 / 10.0,
            self.like
        )
    }
}

/// The profiles, in the order they run.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "datacenter",
        rate_bits: 1_000_000_000,
        one_way: Duration::from_micros(250),
        loss_per_mille: 0,
        like: "a cache in the same data centre",
    },
    Profile {
        name: "wan",
        rate_bits: 100_000_000,
        one_way: Duration::from_millis(40),
        loss_per_mille: 1,
        like: "a cache in another region",
    },
    Profile {
        name: "satellite",
        rate_bits: 20_000_000,
        one_way: Duration::from_millis(300),
        loss_per_mille: 5,
        like: "a geostationary satellite link",
    },
    Profile {
        name: "mobile",
        rate_bits: 10_000_000,
        one_way: Duration::from_millis(50),
        loss_per_mille: 10,
        like: "a 4G link",
    },
];

/// The profiles `names` selects (all for none).
pub fn select(names: &[String]) -> Result<Vec<&'static Profile>> {
    if names.is_empty() {
        return Ok(PROFILES.iter().collect());
    }
    names
        .iter()
        .map(|name| match PROFILES.iter().find(|p| p.name == name) {
            Some(profile) => Ok(profile),
            None => bail!(
                "no network profile `{name}`: the profiles are {}",
                PROFILES
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

/// The build site shaped to a profile: every mirror link capped, a delay line in front of each
/// nginx, random loss both ways on each mirror link.
pub struct Shaped {
    pub site: BuildSite,
    _delays: Vec<Forwarder>,
}

impl Shaped {
    pub fn start(
        profile: &Profile,
        hosts: &[&'static str],
        mirrors: &[&'static str],
    ) -> Result<Self> {
        let site = BuildSite::start(hosts, mirrors, profile.rate_bits, MirrorPort(PROXY_PORT));
        let mut delays = Vec::new();
        for mirror in &site.mirrors {
            let listen = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PROXY_PORT);
            let nginx = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), PORT);
            delays.push(DelayProxy::start(
                &mirror.ns,
                listen,
                nginx,
                profile.one_way,
            )?);
        }
        if profile.loss_per_mille > 0 {
            let per_mille = profile.loss_per_mille;
            let links = site.mirror_links();
            let set = links
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join(", ");
            for mirror in &site.mirrors {
                nft::apply(
                    &mirror.ns,
                    &format!(
                        "table ip nwloss {{\n\
                         \tchain in {{ type filter hook input priority 0; policy accept; \
                         iifname {{ {set} }} numgen random mod 1000 < {per_mille} drop; }}\n\
                         \tchain out {{ type filter hook output priority 0; policy accept; \
                         oifname {{ {set} }} numgen random mod 1000 < {per_mille} drop; }}\n\
                         }}\n"
                    ),
                );
            }
        }
        Ok(Shaped {
            site,
            _delays: delays,
        })
    }

    /// `host`'s URL for the primary through its delay line: where ccache goes without
    /// netwatch.
    pub fn primary_url(&self, host: &str) -> String {
        let addr = self.site.host(host).links[0].mirror_addr;
        format!("http://{addr}:{PROXY_PORT}/direct")
    }
}
