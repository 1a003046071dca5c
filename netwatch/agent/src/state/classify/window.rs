//! A short history of one subject's counters, for rates and counts over a time window.

use std::collections::VecDeque;

/// Counter values at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub at_ns: u64,
    /// Packets sent (the kernel's counter): the loss ratio's denominator where data
    /// segments are not counted.
    pub tx_packets: u64,
    /// TCP segments carrying data sent, and the buffers that carried them.
    pub data_segs: u64,
    pub data_buffers: u64,
    pub rx_packets: u64,
    /// Segments retransmitted, and of those the ones that follow a stall (not loss); the
    /// same for retransmits (buffers).
    pub retrans_segs: u64,
    pub stall_segs: u64,
    pub retransmits: u64,
    pub stall_retransmits: u64,
    pub carrier_changes: u64,
    pub connects_ok: u64,
    pub connects_failed: u64,
}

impl Sample {
    /// Retransmitted segments that count as loss: those not following a stall.
    pub fn lost_segs(&self) -> u64 {
        self.retrans_segs.saturating_sub(self.stall_segs)
    }

    /// Retransmits (buffers) that count as loss.
    pub fn lost_buffers(&self) -> u64 {
        self.retransmits.saturating_sub(self.stall_retransmits)
    }
}

/// Samples no closer than `MIN_SPACING_NS`, covering the longest window asked for plus the
/// one sample just before it, which is the baseline growth is measured from.
#[derive(Clone, Debug, Default)]
pub struct Window {
    samples: VecDeque<Sample>,
}

const MIN_SPACING_NS: u64 = 50_000_000;

impl Window {
    /// Records `current` and drops what is no longer needed as a baseline for `keep_ns`.
    pub fn record(&mut self, current: Sample, keep_ns: u64) {
        let spaced = self
            .samples
            .back()
            .is_none_or(|last| current.at_ns.saturating_sub(last.at_ns) >= MIN_SPACING_NS);
        if spaced {
            self.samples.push_back(current);
        }
        let boundary = current.at_ns.saturating_sub(keep_ns);
        while self
            .samples
            .get(1)
            .is_some_and(|second| second.at_ns <= boundary)
        {
            self.samples.pop_front();
        }
    }

    /// How much each counter grew since the last sample at or before the start of the last
    /// `window_ns`. Before the window is covered, it counts from the oldest sample.
    pub fn growth(&self, current: &Sample, window_ns: u64) -> Sample {
        let start = current.at_ns.saturating_sub(window_ns);
        let base = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at_ns <= start)
            .or(self.samples.front())
            .unwrap_or(current);
        Sample {
            at_ns: current.at_ns.saturating_sub(base.at_ns),
            tx_packets: current.tx_packets.saturating_sub(base.tx_packets),
            data_segs: current.data_segs.saturating_sub(base.data_segs),
            data_buffers: current.data_buffers.saturating_sub(base.data_buffers),
            rx_packets: current.rx_packets.saturating_sub(base.rx_packets),
            retrans_segs: current.retrans_segs.saturating_sub(base.retrans_segs),
            stall_segs: current.stall_segs.saturating_sub(base.stall_segs),
            retransmits: current.retransmits.saturating_sub(base.retransmits),
            stall_retransmits: current
                .stall_retransmits
                .saturating_sub(base.stall_retransmits),
            carrier_changes: current.carrier_changes.saturating_sub(base.carrier_changes),
            connects_ok: current.connects_ok.saturating_sub(base.connects_ok),
            connects_failed: current.connects_failed.saturating_sub(base.connects_failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64, retrans_segs: u64) -> Sample {
        Sample {
            at_ns: ms * MS,
            retrans_segs,
            ..Sample::default()
        }
    }

    #[test]
    fn growth_counts_from_the_start_of_the_window() {
        let mut window = Window::default();
        for (ms, r) in [(0, 0), (1000, 5), (2000, 9), (3000, 12)] {
            window.record(at(ms, r), 10_000 * MS);
        }
        // From the sample at 1000 ms, the last one at or before the window's start.
        assert_eq!(window.growth(&at(3000, 12), 1500 * MS).retrans_segs, 7);
        assert_eq!(window.growth(&at(3000, 12), 60_000 * MS).retrans_segs, 12);
    }

    #[test]
    fn old_samples_are_dropped_but_one_baseline_is_kept() {
        let mut window = Window::default();
        window.record(at(0, 0), 1000 * MS);
        window.record(at(10, 1), 1000 * MS);
        window.record(at(500, 2), 1000 * MS);
        window.record(at(2500, 3), 1000 * MS);
        window.record(at(2600, 4), 1000 * MS);
        // 10 ms was too close to 0 ms; 0 ms went once 500 ms could serve as the baseline.
        assert_eq!(window.samples, [at(500, 2), at(2500, 3), at(2600, 4)]);
    }
}
