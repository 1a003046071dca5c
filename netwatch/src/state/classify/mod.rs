//! The classifier: observations and the time in, verdicts out. No I/O and no clock of its
//! own, so every rule and the hysteresis can be tested exactly (docs/verdict.md).

mod endpoint;
mod host;
mod link;
mod window;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use super::{
    EndpointObservation, EndpointStatus, Health, LinkObservation, LinkStatus, NetworkState,
    Observations, Thresholds, Verdict,
};
use window::{Sample, Window};

/// A health with its reasons, before hysteresis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub health: Health,
    pub reasons: Vec<String>,
    /// Taken over from another subject (an endpoint's link): it does not start this
    /// subject's own recovery hold.
    pub inherited: bool,
}

impl Assessment {
    fn new(health: Health, reason: impl Into<String>) -> Self {
        Self {
            health,
            reasons: vec![reason.into()],
            inherited: false,
        }
    }

    fn inherited(mut self) -> Self {
        self.inherited = true;
        self
    }

    fn with(mut self, more: &[String]) -> Self {
        self.reasons.extend(more.iter().cloned());
        self
    }

    /// Lowers the health to `to` if that is worse.
    fn worsen(&mut self, to: Health) {
        if severity(to) > severity(self.health) {
            self.health = to;
        }
    }
}

fn severity(health: Health) -> u8 {
    match health {
        Health::Up => 0,
        Health::Unknown => 1,
        Health::Degraded => 2,
        Health::Down => 3,
    }
}

/// What the classifier remembers of one subject between calls.
#[derive(Default)]
struct Memory {
    window: Window,
    verdict: Option<Verdict>,
    /// When a Degraded condition was last seen, for the recovery hold.
    degraded_at_ns: Option<u64>,
    /// Evidence of reception: the receive count last seen and when it last grew.
    rx_packets: u64,
    rx_grew_at_ns: Option<u64>,
    /// Retransmit count when something was last received, for the blackhole rule.
    retransmits_at_rx: u64,
    /// Which counter `rx_packets` came from: counts from two counters cannot be compared.
    rx_source: Option<RxSource>,
}

/// Where a subject's receive count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxSource {
    /// XDP's count of packets from the endpoint's own address.
    PerSource,
    /// The whole link's count: a link's own, or an endpoint's link where XDP does not count
    /// per source.
    Link(u32),
}

impl Memory {
    /// Notes received traffic: XDP's own timestamp where there is one, else the time the
    /// receive counter was seen to grow.
    fn note_rx(
        &mut self,
        source: RxSource,
        packets: u64,
        kernel_last_rx_ns: Option<u64>,
        retransmits: u64,
        now_ns: u64,
    ) {
        // A new counter (the route moved to another link) is a new baseline, not traffic.
        let same_counter = self
            .rx_source
            .replace(source)
            .is_none_or(|was| was == source);
        let grew = same_counter && packets > self.rx_packets;
        if grew {
            self.rx_grew_at_ns = Some(kernel_last_rx_ns.unwrap_or(now_ns));
            self.retransmits_at_rx = retransmits;
        }
        if self.verdict.is_none() {
            // First sight: counts from before the agent started say nothing about now.
            self.retransmits_at_rx = retransmits;
        }
        self.rx_packets = packets;
    }

    fn last_rx_ns(&self) -> Option<u64> {
        self.rx_grew_at_ns
    }

    fn degraded(&self) -> bool {
        self.verdict
            .as_ref()
            .is_some_and(|v| v.health == Health::Degraded)
    }

    /// Hysteresis: Down, Degraded and Unknown take effect at once (a fault must reach
    /// subscribers within one event); leaving Degraded for Up waits until no Degraded
    /// condition has been seen for `hold`.
    fn settle(&mut self, raw: Assessment, now_ns: u64, hold: Duration) -> Verdict {
        if raw.health == Health::Degraded && !raw.inherited {
            self.degraded_at_ns = Some(now_ns);
        }
        let current = self.verdict.take();
        let held = raw.health == Health::Up
            && current
                .as_ref()
                .is_some_and(|v| v.health == Health::Degraded)
            && self
                .degraded_at_ns
                .is_some_and(|at| now_ns.saturating_sub(at) < ns(hold));
        let (health, reasons) = if held {
            let previous = current
                .as_ref()
                .map(|v| v.reasons.clone())
                .unwrap_or_default();
            let mut reasons = vec![format!("recovering: healthy for less than {}", secs(hold))];
            reasons.extend(
                previous
                    .into_iter()
                    .filter(|r| !r.starts_with("recovering")),
            );
            (Health::Degraded, reasons)
        } else {
            (raw.health, raw.reasons)
        };
        let since_ns = match &current {
            Some(v) if v.health == health => v.since_ns,
            _ => now_ns,
        };
        let verdict = Verdict {
            health,
            reasons,
            since_ns,
        };
        self.verdict = Some(verdict.clone());
        verdict
    }
}

/// Turns observations into verdicts, remembering just enough between calls for windows and
/// hysteresis.
pub struct Classifier {
    thresholds: Thresholds,
    links: HashMap<u32, Memory>,
    endpoints: HashMap<String, Memory>,
    host: Memory,
}

impl Classifier {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            links: HashMap::new(),
            endpoints: HashMap::new(),
            host: Memory::default(),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The verdicts for `obs` at `now_ns` (CLOCK_MONOTONIC, the kernel programs' clock).
    pub fn classify(&mut self, obs: &Observations, now_ns: u64) -> NetworkState {
        self.links
            .retain(|ifindex, _| obs.links.contains_key(ifindex));
        let links: BTreeMap<String, LinkStatus> = obs
            .links
            .values()
            .filter(|l| !l.link.loopback)
            .map(|l| (l.link.name.clone(), self.classify_link(l, now_ns)))
            .collect();
        self.endpoints
            .retain(|name, _| obs.endpoints.iter().any(|e| &e.name == name));
        let by_index: HashMap<u32, &LinkStatus> = links.values().map(|l| (l.ifindex, l)).collect();
        let endpoints: BTreeMap<String, EndpointStatus> = obs
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    self.classify_endpoint(e, &by_index, obs, now_ns),
                )
            })
            .collect();
        let raw = host::assess(links.values(), endpoints.values());
        let host = self.host.settle(raw, now_ns, self.thresholds.recovery_hold);
        NetworkState {
            host,
            links,
            endpoints,
        }
    }

    fn classify_link(&mut self, obs: &LinkObservation, now_ns: u64) -> LinkStatus {
        let t = &self.thresholds;
        let memory = self.links.entry(obs.link.ifindex).or_default();
        let stats = &obs.link.stats;
        let rx_packets = obs.xdp_rx.map_or(stats.rx_packets, |rx| rx.packets);
        let kernel_last_rx = obs.xdp_rx.map(|rx| rx.last_rx_ns).filter(|at| *at != 0);
        memory.note_rx(
            RxSource::Link(obs.link.ifindex),
            rx_packets,
            kernel_last_rx,
            obs.retransmits,
            now_ns,
        );
        let sample = Sample {
            at_ns: now_ns,
            tx_packets: stats.tx_packets,
            rx_packets,
            retransmits: obs.retransmits,
            carrier_changes: u64::from(obs.link.carrier_changes),
            ..Sample::default()
        };
        memory
            .window
            .record(sample, ns(t.flap_window.max(t.evidence_window)));
        let cx = link::LinkContext {
            now_ns,
            last_rx_ns: memory.last_rx_ns(),
            over_loss_window: memory.window.growth(&sample, ns(t.loss_window)),
            over_flap_window: memory.window.growth(&sample, ns(t.flap_window)),
            over_stall_window: memory.window.growth(&sample, ns(t.rx_stall)),
            degraded: memory.degraded(),
        };
        let raw = link::assess(obs, &cx, t);
        let verdict = memory.settle(raw, now_ns, t.recovery_hold);
        link_status(obs, verdict)
    }

    fn classify_endpoint(
        &mut self,
        obs: &EndpointObservation,
        links: &HashMap<u32, &LinkStatus>,
        all: &Observations,
        now_ns: u64,
    ) -> EndpointStatus {
        let t = &self.thresholds;
        let memory = self.endpoints.entry(obs.name.clone()).or_default();
        let link = obs.oif.and_then(|oif| links.get(&oif));
        // Per-source counts where XDP watches the link; else the link's own reception.
        let (source, rx_packets, kernel_last_rx) =
            match (obs.rx, obs.oif.and_then(|i| all.links.get(&i))) {
                (Some(rx), _) => (
                    RxSource::PerSource,
                    rx.packets,
                    Some(rx.last_rx_ns).filter(|at| *at != 0),
                ),
                (None, Some(l)) => {
                    let source = RxSource::Link(l.link.ifindex);
                    match l.xdp_rx {
                        Some(rx) => (
                            source,
                            rx.packets,
                            Some(rx.last_rx_ns).filter(|at| *at != 0),
                        ),
                        None => (source, l.link.stats.rx_packets, None),
                    }
                }
                (None, None) => (RxSource::Link(0), 0, None),
            };
        memory.note_rx(
            source,
            rx_packets,
            kernel_last_rx,
            obs.tcp.retransmits,
            now_ns,
        );
        // Once Down, only newer evidence brings it back: what was received, or connected,
        // before it went Down (perhaps over a path since gone) says nothing about now.
        let down_since = memory
            .verdict
            .as_ref()
            .filter(|v| v.health == Health::Down)
            .map(|v| v.since_ns);
        let newer = |at: &u64| down_since.is_none_or(|down| *at > down);
        let evidence_ns = down_since.map_or(ns(t.evidence_window), |down| {
            ns(t.evidence_window).min(now_ns.saturating_sub(down))
        });
        let sample = Sample {
            at_ns: now_ns,
            rx_packets,
            retransmits: obs.tcp.retransmits,
            connects_ok: obs.tcp.connects_ok,
            connects_failed: obs.tcp.connects_failed,
            ..Sample::default()
        };
        memory.window.record(sample, ns(t.evidence_window));
        let cx = endpoint::EndpointContext {
            now_ns,
            link: link.map(|l| (l.name.as_str(), &l.verdict)),
            retransmits_since_rx: obs.tcp.retransmits.saturating_sub(memory.retransmits_at_rx),
            last_rx_ns: memory.last_rx_ns().filter(newer),
            over_loss_window: memory.window.growth(&sample, ns(t.loss_window)),
            over_evidence_window: memory.window.growth(&sample, evidence_ns),
            degraded: memory.degraded(),
        };
        let mut raw = endpoint::assess(obs, &cx, t);
        if let Some(down) = down_since {
            // Nothing new heard: it stays Down, for up to the evidence window (then Unknown,
            // as for an endpoint nobody talks to).
            if raw.health == Health::Unknown && now_ns.saturating_sub(down) < ns(t.evidence_window)
            {
                raw = Assessment::new(Health::Down, "nothing heard from it since it went down");
            }
        }
        let verdict = memory.settle(raw, now_ns, t.recovery_hold);
        EndpointStatus {
            name: obs.name.clone(),
            address: obs.address.to_string(),
            verdict,
            via: link.map(|l| l.name.clone()),
            retransmits: obs.tcp.retransmits,
        }
    }
}

fn link_status(obs: &LinkObservation, verdict: Verdict) -> LinkStatus {
    let link = &obs.link;
    let s = &link.stats;
    LinkStatus {
        ifindex: link.ifindex,
        name: link.name.clone(),
        verdict,
        admin_up: link.admin_up,
        carrier: link.carrier,
        oper: link.oper.to_string(),
        mtu: link.mtu,
        mac: link.mac.map(|m| m.to_string()),
        default_route: obs.default_route,
        xdp: obs.xdp_rx.is_some(),
        rx_packets: obs.xdp_rx.map_or(s.rx_packets, |rx| rx.packets),
        rx_bytes: obs.xdp_rx.map_or(s.rx_bytes, |rx| rx.bytes),
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        rx_errors: s.rx_errors,
        tx_errors: s.tx_errors,
        rx_dropped: s.rx_dropped,
        tx_dropped: s.tx_dropped,
        retransmits: obs.retransmits,
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// "10s", "1.5s": durations in reasons.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests;
