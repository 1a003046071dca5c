//! What the classifier remembers of one subject between calls: its counters' history, its
//! verdict, and the evidence of reception and of data waiting for a reply.

use std::time::Duration;

use super::{ns, secs, silence::Silence, window::Window, Assessment};
use crate::state::{Health, Verdict};

/// Where a subject's receive count comes from. Counts from two counters cannot be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxSource {
    /// XDP's count of packets from an endpoint's own address.
    Peer,
    /// XDP's count for a whole link (a link's own, or an endpoint's link where XDP does not
    /// count per source): timestamped in the kernel.
    Xdp(u32),
    /// The kernel's own counter of a link XDP does not watch: it says how many, not when, so
    /// growth is dated by when it was seen.
    Kernel(u32),
    /// The kernel confirmed a neighbour on this link reachable (its neighbour entry's
    /// confirmation time).
    Neighbour(u32),
}

/// The evidence that something was received: the count last seen, and when it last grew.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reception {
    source: Option<RxSource>,
    packets: u64,
    at_ns: Option<u64>,
    /// Where `at_ns` came from, for the reasons.
    at_source: Option<RxSource>,
}

impl Reception {
    /// Notes a reading of `packets` from `source`; `kernel_at_ns` is the kernel's own time of
    /// the latest packet, where it keeps one.
    ///
    /// A first reading, or one from another counter (the route moved to another link), is
    /// a baseline, not traffic: only growth is evidence. XDP's own timestamp is evidence from
    /// the first reading, since it dates a real packet.
    pub fn note(&mut self, source: RxSource, packets: u64, kernel_at_ns: Option<u64>, now_ns: u64) {
        let same = self.source.replace(source);
        let grew = match same {
            Some(was) if was == source => packets > self.packets,
            Some(_) => false,
            None => kernel_at_ns.is_some() && packets > 0,
        };
        if grew {
            self.at_ns = Some(kernel_at_ns.unwrap_or(now_ns));
            self.at_source = Some(source);
        }
        self.packets = packets;
    }

    /// When something was last received, and which counter said so.
    pub fn last(&self) -> Option<(u64, RxSource)> {
        Some((self.at_ns?, self.at_source?))
    }
}

#[derive(Default)]
pub struct Memory {
    pub window: Window,
    pub verdict: Option<Verdict>,
    /// When a Degraded condition was last seen, for the recovery hold.
    degraded_at_ns: Option<u64>,
    pub rx: Reception,
    /// When this subject was first judged: silence is only known since then.
    pub first_seen_ns: Option<u64>,
    /// TCP data sent and not answered.
    pub silence: Silence,
    /// Loss is counted from here on: the subject came back from Down, and what was
    /// retransmitted during the outage says nothing about it now; or it left Degraded, and
    /// the loss that made it so is over.
    loss_from_ns: Option<u64>,
    /// When it last came back from Down.
    back_ns: Option<u64>,
}

impl Memory {
    pub fn degraded(&self) -> bool {
        self.health() == Some(Health::Degraded)
    }

    pub fn health(&self) -> Option<Health> {
        self.verdict.as_ref().map(|v| v.health)
    }

    /// When the current verdict began, if it is `health`.
    pub fn since(&self, health: Health) -> Option<u64> {
        self.verdict
            .as_ref()
            .filter(|v| v.health == health)
            .map(|v| v.since_ns)
    }

    /// The subject came back from Down at `now_ns`: loss is counted afresh from then, and
    /// data left unanswered during the outage is forgotten.
    pub fn came_back(&mut self, now_ns: u64) {
        self.loss_from_ns = Some(now_ns);
        self.back_ns = Some(now_ns);
        self.silence.forget();
    }

    /// When the subject last came back from Down.
    pub fn back_ns(&self) -> Option<u64> {
        self.back_ns
    }

    /// The window to count loss over: `loss_ns`, or less if the subject came back lately.
    pub fn loss_window_ns(&self, now_ns: u64, loss_ns: u64) -> u64 {
        self.loss_from_ns
            .map_or(loss_ns, |from| loss_ns.min(now_ns.saturating_sub(from)))
    }

    /// Hysteresis: Down, Degraded and Unknown take effect at once (a fault must reach
    /// subscribers within one event); leaving Degraded for Up waits until no Degraded
    /// condition has been seen for `hold`.
    pub fn settle(&mut self, raw: Assessment, now_ns: u64, hold: Duration) -> Verdict {
        if raw.health == Health::Degraded && !raw.inherited {
            self.degraded_at_ns = Some(now_ns);
        }
        let current = self.verdict.take();
        let held = raw.health == Health::Up
            && !raw.confirmed
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
        if health == Health::Up
            && current
                .as_ref()
                .is_some_and(|v| v.health == Health::Degraded)
        {
            // The loss that made it Degraded is over: it must not count a second time.
            self.loss_from_ns = Some(now_ns);
        }
        let verdict = Verdict {
            health,
            reasons,
            since_ns,
        };
        self.verdict = Some(verdict.clone());
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_reading_of_a_kernel_counter_is_a_baseline_not_traffic() {
        let mut rx = Reception::default();
        rx.note(RxSource::Kernel(2), 5_000, None, 100);
        assert_eq!(rx.last(), None);
        rx.note(RxSource::Kernel(2), 5_000, None, 200);
        assert_eq!(rx.last(), None, "nothing new");
        rx.note(RxSource::Kernel(2), 5_001, None, 300);
        assert_eq!(rx.last(), Some((300, RxSource::Kernel(2))));
    }

    #[test]
    fn xdp_dates_its_first_reading_and_another_counter_is_a_new_baseline() {
        let mut rx = Reception::default();
        rx.note(RxSource::Xdp(2), 3, Some(90), 100);
        assert_eq!(rx.last(), Some((90, RxSource::Xdp(2))));
        rx.note(RxSource::Xdp(3), 7_000, Some(150), 200);
        assert_eq!(
            rx.last(),
            Some((90, RxSource::Xdp(2))),
            "route moved: a baseline"
        );
    }
}
