//! Named network profiles for the build scenario, built from what this kernel has: tbf caps
//! the rate (on each mirror's egress), the bench's delay line in front of each nginx adds
//! the round trip (this kernel has no netem; the line delays data, not TCP handshakes), and
//! nftables drops packets at random both ways on each mirror's link.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};

use super::super::transfer::{delay::DelayProxy, proxy::Forwarder};
use crate::{mirrors::ThreeMirrors, nft};

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

/// The three mirrors shaped to a profile, with the configuration pointing at the delay lines.
pub struct Shaped {
    pub mirrors: ThreeMirrors,
    _delays: Vec<Forwarder>,
}

impl Shaped {
    pub fn start(profile: &Profile) -> Result<Self> {
        let mut mirrors = ThreeMirrors::start([profile.rate_bits; 3]);
        let mut delays = Vec::new();
        let mut config = String::new();
        for mirror in &mirrors.mirrors {
            let ip = mirror.addr.ip();
            let proxy = SocketAddr::new(ip, PROXY_PORT);
            delays.push(DelayProxy::start(
                &mirror.ns,
                proxy,
                mirror.addr,
                profile.one_way,
            )?);
            if profile.loss_per_mille > 0 {
                let link = mirror.client_if.replace("nwc", "nwm");
                let per_mille = profile.loss_per_mille;
                nft::apply(
                    &mirror.ns,
                    &format!(
                        "table ip nwloss {{\n\
                         \tchain in {{ type filter hook input priority 0; policy accept; \
                         iifname \"{link}\" numgen random mod 1000 < {per_mille} drop; }}\n\
                         \tchain out {{ type filter hook output priority 0; policy accept; \
                         oifname \"{link}\" numgen random mod 1000 < {per_mille} drop; }}\n\
                         }}\n"
                    ),
                );
            }
            config += &format!(
                "[[endpoint]]\nname = \"{}\"\naddress = \"{proxy}\"\n\n",
                mirror.name
            );
        }
        for (priority, mirror) in mirrors.mirrors.iter().enumerate() {
            config += &format!(
                "[[mirror]]\nname = \"{}\"\npriority = {}\nurl = \"http://{}:{PROXY_PORT}/\"\n\n",
                mirror.name,
                priority + 1,
                mirror.addr.ip()
            );
        }
        mirrors.set_config(config);
        Ok(Shaped {
            mirrors,
            _delays: delays,
        })
    }

    /// The primary's URL through its delay line: where ccache goes without netwatch.
    pub fn primary_url(&self) -> String {
        let ip: IpAddr = self.mirrors.mirrors[0].addr.ip();
        format!("http://{ip}:{PROXY_PORT}/direct")
    }
}
