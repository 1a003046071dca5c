//! The verdict: what netwatch tells programs about a link, an endpoint or the host.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

/// How usable the network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No evidence either way yet (at start, or no traffic to judge by).
    Unknown,
    Up,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health with the observations that decided it, and since when it has held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub health: Health,
    /// Which observations decided it, most important first, for people.
    pub reasons: Vec<String>,
    /// CLOCK_MONOTONIC nanoseconds when `health` last changed.
    pub since_ns: u64,
}

impl Verdict {
    pub fn unknown(reason: &str, now_ns: u64) -> Self {
        Self {
            health: Health::Unknown,
            reasons: vec![reason.to_string()],
            since_ns: now_ns,
        }
    }
}

/// One interface: its verdict and what is known of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub ifindex: u32,
    pub name: String,
    pub verdict: Verdict,
    pub admin_up: bool,
    pub carrier: bool,
    pub oper: String,
    pub mtu: u32,
    pub mac: Option<String>,
    pub default_route: bool,
    pub xdp: bool,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub retransmits: u64,
}

/// A configured endpoint (host:port): its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub name: String,
    pub address: String,
    pub verdict: Verdict,
    /// The interface traffic to it leaves by, if it is routable.
    pub via: Option<String>,
    pub retransmits: u64,
}

/// Everything netwatch currently believes, as served to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub host: Verdict,
    pub links: BTreeMap<String, LinkStatus>,
    pub endpoints: BTreeMap<String, EndpointStatus>,
}

impl NetworkState {
    pub fn initial(now_ns: u64) -> Self {
        Self {
            host: Verdict::unknown("starting: no observations yet", now_ns),
            links: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }

    /// The verdict for `subject` (`host`, `link:NAME` or `endpoint:NAME`).
    pub fn verdict(&self, subject: &Subject) -> Option<&Verdict> {
        match subject {
            Subject::Host => Some(&self.host),
            Subject::Link(name) => self.links.get(name).map(|l| &l.verdict),
            Subject::Endpoint(name) => self.endpoints.get(name).map(|e| &e.verdict),
        }
    }

    /// Every subject whose health differs from `before`, including ones that appeared or
    /// went. Reasons alone are no change: they carry live figures ("received 0.3s ago")
    /// that move on every classification, and ride along in the state.
    pub fn changes_since(&self, before: &NetworkState) -> Vec<Subject> {
        let mut changed = Vec::new();
        if self.host.health != before.host.health {
            changed.push(Subject::Host);
        }
        diff(
            &self.links,
            &before.links,
            |l| &l.verdict,
            Subject::Link,
            &mut changed,
        );
        diff(
            &self.endpoints,
            &before.endpoints,
            |e| &e.verdict,
            Subject::Endpoint,
            &mut changed,
        );
        changed
    }
}

fn diff<T>(
    now: &BTreeMap<String, T>,
    before: &BTreeMap<String, T>,
    verdict: impl Fn(&T) -> &Verdict,
    subject: impl Fn(String) -> Subject,
    out: &mut Vec<Subject>,
) {
    for (name, item) in now {
        if before.get(name).map(|b| verdict(b).health) != Some(verdict(item).health) {
            out.push(subject(name.clone()));
        }
    }
    for name in before.keys().filter(|name| !now.contains_key(*name)) {
        out.push(subject(name.clone()));
    }
}

/// What a verdict is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Host,
    Link(String),
    Endpoint(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Link(name) => write!(f, "link:{name}"),
            Self::Endpoint(name) => write!(f, "endpoint:{name}"),
        }
    }
}

impl std::str::FromStr for Subject {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "host" => Ok(Self::Host),
            Some(("link", name)) if !name.is_empty() => Ok(Self::Link(name.to_string())),
            Some(("endpoint", name)) if !name.is_empty() => Ok(Self::Endpoint(name.to_string())),
            _ => Err(format!(
                "`{text}` is not a subject: expected `host`, `link:NAME` or `endpoint:NAME`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(health: Health, reason: &str) -> NetworkState {
        let mut state = NetworkState::initial(0);
        state.host = Verdict {
            health,
            reasons: vec![reason.to_string()],
            since_ns: 0,
        };
        state
    }

    #[test]
    fn a_change_is_a_health_change_not_new_figures_in_the_reasons() {
        let before = with_host(Health::Up, "traffic received 0.1s ago");
        assert!(with_host(Health::Up, "traffic received 0.6s ago")
            .changes_since(&before)
            .is_empty());
        assert_eq!(
            with_host(Health::Down, "no carrier").changes_since(&before),
            [Subject::Host]
        );
    }
}
