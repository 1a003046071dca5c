//! The rules for one configured endpoint, before hysteresis: the first that applies decides.

use crate::state::{EndpointObservation, Thresholds, Verdict};

use super::{
    loss::{cleared, lossy, Denominator},
    ns, secs,
    window::Sample,
    Assessment, Health,
};

/// The longest a TCP timeout may take (TCP_RTO_MAX, include/net/tcp.h).
const RTO_MAX_NS: u64 = 120_000_000_000;
/// The shortest (TCP_RTO_MIN): a stall's next timeout is due within this doubled per backoff.
const RTO_MIN_NS: u64 = 200_000_000;

pub struct EndpointContext<'a> {
    pub now_ns: u64,
    /// The verdict and name of the link it is routed through.
    pub link: Option<(&'a str, &'a Verdict)>,
    /// The latest packet received from it, RSTs aside (or from its link, where XDP does not
    /// count per source); the latest connect to it that worked; the latest probe that
    /// connected. Each only if newer than a Down verdict it has.
    pub last_rx_ns: Option<u64>,
    pub last_connected_ns: Option<u64>,
    pub probe_ok_ns: Option<u64>,
    /// A stall toward it that nothing has ended: timeouts in a row without an
    /// acknowledgement of new data.
    pub stall: Option<Stall>,
    /// The first data sent to it after the last packet from it, if nothing came back since.
    pub awaiting_since_ns: Option<u64>,
    pub over_loss_window: Sample,
    /// The last moment: whether loss has ended.
    pub over_clear_window: Sample,
    pub over_evidence_window: Sample,
    /// Whether what was sent to it is counted (the loss ratio's denominator).
    pub counts_data_sent: bool,
    pub degraded: bool,
}

/// Timeouts in a row toward the endpoint without progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// How many timeouts in a row: the RTO backoff at the latest retransmit, plus one.
    pub timeouts: u32,
    /// When that retransmit was sent.
    pub at_ns: u64,
}

impl Stall {
    /// Whether the stall still says something now: the socket's next timeout is due within
    /// twice its current backoff; past that (and past the evidence window) it gave up or was
    /// closed.
    pub fn current(&self, now_ns: u64, evidence_ns: u64) -> bool {
        let next_due = RTO_MIN_NS
            .saturating_mul(1u64 << self.timeouts.min(20))
            .min(RTO_MAX_NS);
        now_ns.saturating_sub(self.at_ns) <= evidence_ns.max(2 * next_due)
    }
}

pub fn assess(obs: &EndpointObservation, cx: &EndpointContext, t: &Thresholds) -> Assessment {
    let recent = &cx.over_clear_window;
    let cleared = cleared(recent, denominator(cx, recent), t);
    rules(obs, cx, cleared, t).confirmed_if(cleared)
}

/// What the loss ratio of `window` is a share of: the data sent to it where that is counted,
/// else what came back from it.
fn denominator(cx: &EndpointContext, window: &Sample) -> Denominator {
    if cx.counts_data_sent {
        Denominator::Data {
            segs: window.data_segs,
            buffers: window.data_buffers,
        }
    } else {
        Denominator::Replies(window.rx_packets)
    }
}

fn rules(
    obs: &EndpointObservation,
    cx: &EndpointContext,
    cleared: bool,
    t: &Thresholds,
) -> Assessment {
    let Some(address) = obs.address else {
        let why = obs.unresolved.as_deref().unwrap_or("not resolved yet");
        return Assessment::new(Health::Unknown, format!("{}: {why}", obs.target));
    };
    let Some((link_name, link)) = cx.link else {
        return Assessment::new(Health::Down, format!("no route to {}", address.ip()));
    };
    if link.health == Health::Down {
        return Assessment::new(Health::Down, format!("its link {link_name} is down"))
            .with(&link.reasons);
    }
    let evidence_ns = ns(t.evidence_window);
    let tcp = &obs.tcp;
    let refused_ago = cx.now_ns.saturating_sub(tcp.last_connect_failed_ns);
    if tcp.last_connect_failed_ns > tcp.last_connect_ok_ns && refused_ago <= evidence_ns {
        let recent = &cx.over_evidence_window;
        return Assessment::new(
            Health::Down,
            format!(
                "connections fail: {} attempts failed in the last {}, the latest {:.1}s ago, \
                 none succeeded since",
                recent.connects_failed.max(1),
                secs(t.evidence_window),
                refused_ago as f64 / 1e9
            ),
        );
    }
    if let Some(stall) = cx.stall.filter(|s| s.current(cx.now_ns, evidence_ns)) {
        let ago = cx.now_ns.saturating_sub(stall.at_ns) as f64 / 1e9;
        if stall.timeouts >= t.blackhole_timeouts {
            return Assessment::new(
                Health::Down,
                format!(
                    "blackholed: {} timeouts in a row without an acknowledgement (the latest \
                     retransmit {ago:.1}s ago)",
                    stall.timeouts
                ),
            );
        }
        if stall.timeouts >= 2 {
            return Assessment::new(
                Health::Degraded,
                format!(
                    "no reply: {} timeouts in a row without an acknowledgement (the latest \
                     retransmit {ago:.1}s ago)",
                    stall.timeouts
                ),
            );
        }
    }
    if let Some(probe) = &obs.probe {
        if let Some(error) = &probe.error {
            return Assessment::new(Health::Down, format!("probe failed: {error}"));
        }
    }
    let loss = &cx.over_loss_window;
    if let Some(reason) = lossy(loss, denominator(cx, loss), cx.degraded, cleared, t) {
        return Assessment::new(Health::Degraded, reason);
    }
    if let Some(since) = cx.awaiting_since_ns {
        let waited = cx.now_ns.saturating_sub(since);
        if waited >= ns(t.rx_stall) && waited <= evidence_ns {
            return Assessment::new(
                Health::Degraded,
                format!(
                    "no reply: TCP data sent to it {:.1}s ago is unanswered",
                    waited as f64 / 1e9
                ),
            );
        }
    }
    if link.health == Health::Degraded {
        // The link's own hold covers its recovery; the endpoint need not wait a second one.
        return Assessment::new(
            Health::Degraded,
            format!("its link {link_name} is degraded"),
        )
        .with(&link.reasons)
        .inherited();
    }
    let ago = |at: Option<u64>| {
        at.map(|at| cx.now_ns.saturating_sub(at))
            .filter(|ago| *ago <= evidence_ns)
    };
    if ago(cx.probe_ok_ns).is_some() {
        return Assessment::new(Health::Up, "probe connected");
    }
    match (ago(cx.last_rx_ns), ago(cx.last_connected_ns)) {
        (Some(silent), _) => Assessment::new(
            Health::Up,
            format!("traffic received from it {:.1}s ago", silent as f64 / 1e9),
        ),
        (None, Some(connected)) => Assessment::new(
            Health::Up,
            format!(
                "a connection to it succeeded {:.1}s ago",
                connected as f64 / 1e9
            ),
        ),
        _ => Assessment::new(
            Health::Unknown,
            format!(
                "no traffic with it in the last {}: unverified",
                secs(t.evidence_window)
            ),
        ),
    }
}
