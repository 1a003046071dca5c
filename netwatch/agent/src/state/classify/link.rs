//! The rules for one link, before hysteresis: the first that applies decides.

use crate::{
    netlink::{NeighState, OperState},
    state::{LinkObservation, Thresholds},
};

use super::{
    loss::{cleared, lossy, Denominator},
    memory::RxSource,
    ns, secs,
    window::Sample,
    Assessment, Health,
};

/// What the link rules need beyond the observation itself.
pub struct LinkContext {
    pub now_ns: u64,
    /// Latest evidence of reception, and which counter gave it.
    pub last_rx: Option<(u64, RxSource)>,
    /// The neighbour the kernel confirmed, for the reasons.
    pub neighbour: Option<std::net::IpAddr>,
    /// When TCP data began going unanswered, in an episode nothing on the link has
    /// answered since (no neighbour confirmed after it began).
    pub trouble_since_ns: Option<u64>,
    /// Counter growth over the loss window, the last moment (whether loss has ended) and
    /// the flap window.
    pub over_loss_window: Sample,
    pub over_clear_window: Sample,
    pub over_flap_window: Sample,
    /// Whether the link is Degraded now (the leave threshold then applies).
    pub degraded: bool,
}

/// Whether the link is down by its own state: admin down, no carrier, or an operstate that
/// says so. Such a link is Down whatever else is seen.
pub fn down_reason(obs: &LinkObservation) -> Option<String> {
    let link = &obs.link;
    if !link.admin_up {
        return Some("administratively down".to_string());
    }
    if !link.carrier {
        return Some("no carrier".to_string());
    }
    if !matches!(link.oper, OperState::Up | OperState::Unknown) {
        return Some(format!("operstate {}", link.oper));
    }
    None
}

pub fn assess(obs: &LinkObservation, cx: &LinkContext, t: &Thresholds) -> Assessment {
    let cleared = cleared(
        &cx.over_clear_window,
        denominator(obs, &cx.over_clear_window),
        t,
    );
    rules(obs, cx, cleared, t).confirmed_if(cleared)
}

/// What the loss ratio of `window` is a share of: data segments where the egress counter
/// runs, else every packet sent.
fn denominator(obs: &LinkObservation, window: &Sample) -> Denominator {
    match obs.tx {
        Some(_) => Denominator::Data {
            segs: window.data_segs,
            buffers: window.data_buffers,
        },
        None => Denominator::Packets(window.tx_packets),
    }
}

fn rules(obs: &LinkObservation, cx: &LinkContext, cleared: bool, t: &Thresholds) -> Assessment {
    if let Some(reason) = down_reason(obs) {
        return Assessment::new(Health::Down, reason);
    }
    if let Some(gateway) = obs.gateway.filter(|g| g.failing) {
        let again = if gateway.state == Some(NeighState::Failed) {
            ""
        } else {
            ", resolving again"
        };
        return Assessment::new(
            Health::Down,
            format!(
                "gateway {} unreachable (neighbour FAILED{again})",
                gateway.addr
            ),
        );
    }
    let flaps = cx.over_flap_window.carrier_changes;
    if flaps >= u64::from(t.flap_changes) {
        return Assessment::new(
            Health::Degraded,
            format!(
                "flapping: {flaps} carrier changes in the last {}",
                secs(t.flap_window)
            ),
        );
    }
    let window = &cx.over_loss_window;
    if let Some(reason) = lossy(window, denominator(obs, window), cx.degraded, cleared, t) {
        return Assessment::new(Health::Degraded, reason);
    }
    if let Some(since) = cx.trouble_since_ns {
        let heard = match cx.last_rx {
            Some((at, _)) => format!(
                "the last packet arrived {:.1}s ago",
                cx.now_ns.saturating_sub(at) as f64 / 1e9
            ),
            None => "nothing received since netwatch started".to_string(),
        };
        return Assessment::new(
            Health::Degraded,
            format!(
                "no reply: TCP data sent through it has gone unanswered since {:.1}s ago, and \
                 no neighbour confirmed since; {heard}",
                cx.now_ns.saturating_sub(since) as f64 / 1e9
            ),
        );
    }
    match cx.last_rx {
        Some((at, source)) if cx.now_ns.saturating_sub(at) <= ns(t.evidence_window) => {
            let ago = cx.now_ns.saturating_sub(at) as f64 / 1e9;
            let evidence = match (source, cx.neighbour) {
                (RxSource::Kernel(_), _) => {
                    format!("the kernel's counters show traffic received {ago:.1}s ago")
                }
                (RxSource::Neighbour(_), Some(neighbour)) => {
                    format!("neighbour {neighbour} confirmed reachable by the kernel {ago:.1}s ago")
                }
                _ => format!("traffic received {ago:.1}s ago"),
            };
            let without_xdp = if obs.xdp_rx.is_none() {
                " (no receive counter on this link: the kernel's counters and neighbour table are the evidence)"
            } else {
                ""
            };
            Assessment::new(Health::Up, format!("carrier up, {evidence}{without_xdp}"))
        }
        _ => Assessment::new(
            Health::Unknown,
            format!(
                "carrier up but no traffic received in the last {}: unverified",
                secs(t.evidence_window)
            ),
        ),
    }
}
