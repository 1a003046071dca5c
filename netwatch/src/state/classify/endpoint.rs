//! The rules for one configured endpoint, before hysteresis: the first that applies decides.

use crate::state::{EndpointObservation, Health, Thresholds, Verdict};

use super::{ns, secs, window::Sample, Assessment};

pub struct EndpointContext<'a> {
    pub now_ns: u64,
    /// The verdict and name of the link it is routed through.
    pub link: Option<(&'a str, &'a Verdict)>,
    /// Retransmits toward it since the last packet received from it (or from its link,
    /// where XDP does not count per source).
    pub retransmits_since_rx: u64,
    pub last_rx_ns: Option<u64>,
    pub over_loss_window: Sample,
    pub over_evidence_window: Sample,
    pub degraded: bool,
}

pub fn assess(obs: &EndpointObservation, cx: &EndpointContext, t: &Thresholds) -> Assessment {
    let Some((link_name, link)) = cx.link else {
        return Assessment::new(Health::Down, format!("no route to {}", obs.address.ip()));
    };
    if link.health == Health::Down {
        return Assessment::new(Health::Down, format!("its link {link_name} is down"))
            .with(&link.reasons);
    }
    if cx.retransmits_since_rx >= t.blackhole_retransmits {
        // Unanswered retransmits are Degraded at once. Down needs the silence to last too:
        // under heavy random loss a lost retransmission also leaves two retransmits without
        // a reply, for a moment, while replies still flow overall.
        let silent_ns = cx
            .last_rx_ns
            .map_or(u64::MAX, |at| cx.now_ns.saturating_sub(at));
        let silence = match cx.last_rx_ns {
            Some(_) => format!(
                "nothing received from it for {:.1}s",
                silent_ns as f64 / 1e9
            ),
            None => "nothing received from it".to_string(),
        };
        let health = if silent_ns >= 2 * ns(t.rx_stall) {
            Health::Down
        } else {
            Health::Degraded
        };
        let what = if health == Health::Down {
            "blackholed"
        } else {
            "no reply"
        };
        return Assessment::new(
            health,
            format!("{what}: {} retransmits, {silence}", cx.retransmits_since_rx),
        );
    }
    if let Some(probe) = &obs.probe {
        if let Some(error) = &probe.error {
            return Assessment::new(Health::Down, format!("probe failed: {error}"));
        }
    }
    let recent = &cx.over_evidence_window;
    if recent.connects_failed > 0 && recent.connects_ok == 0 {
        return Assessment::new(
            Health::Down,
            format!(
                "{} connection attempts failed in the last {}, none succeeded",
                recent.connects_failed,
                secs(t.evidence_window)
            ),
        );
    }
    let loss = &cx.over_loss_window;
    if loss.retransmits >= t.min_retransmits {
        // Without per-destination tx counts, replies received stand in for packets sent.
        let ratio = loss.retransmits as f64 / loss.rx_packets.max(1) as f64;
        let bar = if cx.degraded {
            t.recovered_retransmit_ratio
        } else {
            t.degraded_retransmit_ratio
        };
        if ratio > bar {
            return Assessment::new(
                Health::Degraded,
                format!(
                    "{} retransmits to it in the last {}",
                    loss.retransmits,
                    secs(t.loss_window)
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
    if let Some(probe) = &obs.probe {
        if cx.now_ns.saturating_sub(probe.at_ns) <= ns(t.evidence_window) {
            return Assessment::new(Health::Up, "probe connected");
        }
    }
    match cx.last_rx_ns.map(|at| cx.now_ns.saturating_sub(at)) {
        Some(silent) if silent <= ns(t.evidence_window) => Assessment::new(
            Health::Up,
            format!("traffic received from it {:.1}s ago", silent as f64 / 1e9),
        ),
        _ if recent.connects_ok > 0 => Assessment::new(Health::Up, "connections to it succeeded"),
        _ => Assessment::new(
            Health::Unknown,
            format!(
                "no traffic with it in the last {}: unverified",
                secs(t.evidence_window)
            ),
        ),
    }
}
