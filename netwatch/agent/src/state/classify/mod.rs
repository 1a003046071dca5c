//! The classifier: observations and the time in, verdicts out. No I/O and no clock of its
//! own, so every rule and the hysteresis can be tested exactly (docs/verdict.md).

mod endpoint;
mod host;
mod link;
mod loss;
mod memory;
mod silence;
mod stall;
mod window;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use super::{
    EndpointObservation, EndpointStatus, Health, LinkObservation, LinkStatus, NetworkState,
    Observations, Thresholds, Verdict,
};
use memory::{Memory, RxSource};
use stall::StallTrack;
use window::Sample;

/// A health with its reasons, before hysteresis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub health: Health,
    pub reasons: Vec<String>,
    /// Taken over from another subject (an endpoint's link): it does not start this
    /// subject's own recovery hold.
    pub inherited: bool,
    /// Up on plenty of fresh evidence (a busy moment without loss): no recovery hold needed.
    pub confirmed: bool,
}

impl Assessment {
    fn new(health: Health, reason: impl Into<String>) -> Self {
        Self {
            health,
            reasons: vec![reason.into()],
            inherited: false,
            confirmed: false,
        }
    }

    fn inherited(mut self) -> Self {
        self.inherited = true;
        self
    }

    /// Marks an Up assessment as made on plenty of fresh evidence.
    fn confirmed_if(mut self, confirmed: bool) -> Self {
        self.confirmed = confirmed && self.health == Health::Up;
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

/// Turns observations into verdicts, remembering just enough between calls for windows and
/// hysteresis.
pub struct Classifier {
    thresholds: Thresholds,
    links: HashMap<u32, Memory>,
    endpoints: HashMap<String, (Memory, StallTrack)>,
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

    /// Links whose TCP data has waited half of `rx_stall` or more for a reply, or that are
    /// in an episode of unanswered data, as of the latest judgement: the host's own traffic
    /// waits on them. Each with the time a neighbour confirmation must be newer than to say
    /// the link works (the start of the wait, and not older than half the evidence window).
    pub fn waiting_links(&self, now_ns: u64) -> Vec<(u32, u64)> {
        let soon = ns(self.thresholds.rx_stall) / 2;
        let fresh = now_ns.saturating_sub(ns(self.thresholds.evidence_window) / 2);
        self.links
            .iter()
            .filter_map(|(ifindex, m)| {
                let waiting = m
                    .silence
                    .awaiting()
                    .filter(|since| now_ns.saturating_sub(*since) >= soon);
                let since = m.silence.trouble().or(waiting)?;
                Some((*ifindex, since.max(fresh)))
            })
            .collect()
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
        // The host's inputs have had their own holds: a second one would only delay it.
        let host = self
            .host
            .settle(raw.inherited(), now_ns, self.thresholds.recovery_hold);
        NetworkState {
            host,
            links,
            endpoints,
        }
    }

    fn classify_link(&mut self, obs: &LinkObservation, now_ns: u64) -> LinkStatus {
        let t = &self.thresholds;
        let memory = self.links.entry(obs.link.ifindex).or_default();
        memory.first_seen_ns.get_or_insert(now_ns);
        let down = link::down_reason(obs).is_some();
        if !down && memory.health() == Some(Health::Down) {
            // Back from Down: what was retransmitted, or left unanswered, during the outage
            // says nothing about the link now. (Carrier changes still count: that is how
            // flapping shows.)
            memory.came_back(now_ns);
        }
        let stats = &obs.link.stats;
        let ifindex = obs.link.ifindex;
        let (source, rx_packets, kernel_at) = match obs.xdp_rx {
            Some(rx) => (
                RxSource::Xdp(ifindex),
                rx.packets,
                Some(rx.last_rx_ns).filter(|at| *at != 0),
            ),
            None => (RxSource::Kernel(ifindex), stats.rx_packets, None),
        };
        memory.rx.note(source, rx_packets, kernel_at, now_ns);
        let confirmed = obs.neighbour_confirmed.filter(|(_, at)| *at <= now_ns);

        let sample = Sample {
            at_ns: now_ns,
            tx_packets: stats.tx_packets,
            data_segs: obs.tx.map_or(0, |tx| tx.data_segs),
            data_buffers: obs.tx.map_or(0, |tx| tx.data_buffers),
            rx_packets,
            retrans_segs: obs.retrans_segs,
            stall_segs: obs.stall_retrans_segs,
            retransmits: obs.retransmits,
            stall_retransmits: obs.stall_retransmits,
            carrier_changes: u64::from(obs.link.carrier_changes),
            ..Sample::default()
        };
        memory
            .window
            .record(sample, ns(t.flap_window.max(t.evidence_window)));
        // A neighbour the kernel confirmed reachable is evidence too, dated by the kernel.
        let last_rx = match (memory.rx.last(), confirmed) {
            (Some((at, source)), Some((_, confirmed))) if at >= confirmed => Some((at, source)),
            (_, Some((_, confirmed))) => Some((confirmed, RxSource::Neighbour(ifindex))),
            (rx, None) => rx,
        };
        if let Some(tx) = obs.tx {
            memory
                .silence
                .note(tx.data_segs, tx.last_data_ns, last_rx.map(|(at, _)| at));
            memory.silence.judge(
                now_ns,
                ns(t.rx_stall),
                ns(t.evidence_window),
                tx.last_data_ns,
            );
        }
        // Data going unanswered says the link fails, unless the kernel confirmed a neighbour
        // on it since the trouble began: then the link works and a destination does not
        // answer (the endpoint rules judge that).
        let trouble = memory
            .silence
            .trouble()
            .filter(|since| confirmed.is_none_or(|(_, at)| at <= *since));
        let cx = link::LinkContext {
            now_ns,
            last_rx,
            neighbour: confirmed.map(|(addr, _)| addr),
            trouble_since_ns: trouble,
            over_loss_window: memory
                .window
                .growth(&sample, memory.loss_window_ns(now_ns, ns(t.loss_window))),
            over_clear_window: memory.window.growth(
                &sample,
                memory.loss_window_ns(now_ns, loss::CLEAR_WINDOW_NS),
            ),
            over_flap_window: memory.window.growth(&sample, ns(t.flap_window)),
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
        // When its link came back from Down: a stall or a wait from before was the outage's.
        let link_back_ns = obs
            .oif
            .and_then(|oif| self.links.get(&oif))
            .and_then(Memory::back_ns);
        let (memory, stalls) = self.endpoints.entry(obs.name.clone()).or_default();
        let link = obs.oif.and_then(|oif| links.get(&oif));
        let tcp = &obs.tcp;
        // Packets from it, RSTs aside: a refusal is no sign that it serves. Per source where
        // the programs watch it; else its link's reception stands in.
        let (source, rx_packets, kernel_at) =
            match (obs.peer, obs.oif.and_then(|i| all.links.get(&i))) {
                (Some(peer), _) => (
                    RxSource::Peer,
                    peer.rx_packets.saturating_sub(tcp.resets_received),
                    Some(peer.last_rx_ns).filter(|at| *at != 0),
                ),
                (None, Some(l)) => match l.xdp_rx {
                    Some(rx) => (
                        RxSource::Xdp(l.link.ifindex),
                        rx.packets,
                        Some(rx.last_rx_ns).filter(|at| *at != 0),
                    ),
                    None => (
                        RxSource::Kernel(l.link.ifindex),
                        l.link.stats.rx_packets,
                        None,
                    ),
                },
                (None, None) => (RxSource::Kernel(0), 0, None),
            };
        memory.rx.note(source, rx_packets, kernel_at, now_ns);
        // What is sent to it is counted where it is watched and its link has the tc counter.
        let counts_data_sent = obs.peer.is_some()
            && obs
                .oif
                .and_then(|i| all.links.get(&i))
                .is_some_and(|l| l.tx.is_some());
        if let Some(peer) = obs.peer {
            let last_rx = memory.rx.last().map(|(at, _)| at);
            memory
                .silence
                .note(peer.tx_data_segs, peer.last_tx_data_ns, last_rx);
        }
        let data_segs = obs.peer.map_or(0, |p| p.tx_data_segs);
        let data_buffers = obs.peer.map_or(0, |p| p.tx_data_buffers);
        let stall = stalls.follow(
            obs,
            data_segs,
            memory.rx.last().map(|(at, _)| at),
            now_ns,
            link_back_ns.unwrap_or(0),
        );
        let after_link_back = |at: &u64| link_back_ns.is_none_or(|back| *at > back);
        // Once Down, only newer evidence brings it back: what was received, or connected,
        // before it went Down (perhaps over a path since gone) says nothing about now.
        let down_since = memory.since(Health::Down);
        let newer = |at: &u64| down_since.is_none_or(|down| *at > down);
        let evidence_ns = down_since.map_or(ns(t.evidence_window), |down| {
            ns(t.evidence_window).min(now_ns.saturating_sub(down))
        });
        let sample = Sample {
            at_ns: now_ns,
            data_segs,
            data_buffers,
            rx_packets,
            retrans_segs: tcp.retrans_segs,
            retransmits: tcp.retransmits,
            connects_ok: tcp.connects_ok,
            connects_failed: tcp.connects_failed,
            ..Sample::default()
        };
        memory.window.record(sample, ns(t.evidence_window));
        let mut over_loss_window = memory
            .window
            .growth(&sample, memory.loss_window_ns(now_ns, ns(t.loss_window)));
        let mut over_clear_window = memory.window.growth(
            &sample,
            memory.loss_window_ns(now_ns, loss::CLEAR_WINDOW_NS),
        );
        if stalled_lately(obs, now_ns, t) {
            // A stall and its recovery are judged by the stall rules, not as loss.
            for window in [&mut over_loss_window, &mut over_clear_window] {
                window.stall_segs = window.retrans_segs;
                window.stall_retransmits = window.retransmits;
            }
        }
        let last_rx_ns = memory.rx.last().map(|(at, _)| at).filter(newer);
        let cx = endpoint::EndpointContext {
            now_ns,
            link: link.map(|l| (l.name.as_str(), &l.verdict)),
            last_rx_ns,
            last_connected_ns: Some(tcp.last_connect_ok_ns).filter(|at| *at != 0 && newer(at)),
            probe_ok_ns: obs
                .probe
                .as_ref()
                .filter(|p| p.error.is_none())
                .map(|p| p.at_ns)
                .filter(newer),
            stall,
            awaiting_since_ns: memory
                .silence
                .awaiting()
                .filter(|since| last_rx_ns.is_none_or(|rx| rx < *since))
                .filter(after_link_back),
            over_loss_window,
            over_clear_window,
            over_evidence_window: memory.window.growth(&sample, evidence_ns),
            counts_data_sent,
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
            address: obs
                .address
                .map_or_else(|| obs.target.clone(), |a| a.to_string()),
            verdict,
            via: link.map(|l| l.name.clone()),
            retransmits: tcp.retrans_segs,
        }
    }
}

/// Whether the destination had an outage (a blackhole's timeouts in a row) within the loss
/// window, by the kernel's counters or the agent's memory of them: its retransmits since
/// are the outage's, or its recovery's.
fn stalled_lately(obs: &EndpointObservation, now_ns: u64, t: &Thresholds) -> bool {
    let window = ns(t.loss_window);
    super::observations::outage_lately(&obs.tcp, now_ns, window, t.blackhole_timeouts)
        || obs
            .last_outage_ns
            .is_some_and(|at| now_ns.saturating_sub(at) < window)
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
        // Every counter as the kernel keeps it, one baseline for all (XDP's own counts, since
        // the agent started and with the frame header on every device, serve the verdict).
        rx_packets: s.rx_packets,
        rx_bytes: s.rx_bytes,
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        rx_errors: s.rx_errors,
        tx_errors: s.tx_errors,
        rx_dropped: s.rx_dropped,
        tx_dropped: s.tx_dropped,
        retransmits: obs.retrans_segs,
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
