//! TCP data going unanswered: since when it has waited for anything to come back, and, for a
//! link, the episode of trouble that began once it waited too long. An episode ends only when
//! data flows and is answered for a while again, not at the first packet received (an ARP
//! reply, say), so that a link whose next hop answers but whose destination does not is
//! judged once, not over and over.

/// What one subject's silence looks like now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silence {
    /// The first data sent after the latest reception, if nothing came back since.
    awaiting_since_ns: Option<u64>,
    /// The data-sent count last seen, to tell new data from old.
    data_sent: u64,
    /// When the current episode of trouble began: the start of a wait that lasted.
    trouble_since_ns: Option<u64>,
    /// Since when data has been answered, and the data-sent count then.
    answered: Option<(u64, u64)>,
}

impl Silence {
    /// Notes the data-sent counter, when data last left, and the latest reception.
    pub fn note(&mut self, sent: u64, last_sent_ns: u64, last_rx_ns: Option<u64>) {
        let new_data = sent > self.data_sent && last_sent_ns != 0;
        self.data_sent = sent;
        if let (Some(since), Some(rx)) = (self.awaiting_since_ns, last_rx_ns) {
            if rx >= since {
                self.awaiting_since_ns = None;
            }
        }
        if new_data
            && self.awaiting_since_ns.is_none()
            && last_rx_ns.is_none_or(|rx| last_sent_ns > rx)
        {
            self.awaiting_since_ns = Some(last_sent_ns);
        }
    }

    /// Moves the episode on at `now_ns`: it begins when data has waited `stall_ns`, and
    /// ends once data sent has been answered for `stall_ns`, or nothing was sent for
    /// `idle_ns`.
    pub fn judge(&mut self, now_ns: u64, stall_ns: u64, idle_ns: u64, last_sent_ns: u64) {
        match self.awaiting_since_ns {
            Some(since) => {
                self.answered = None;
                if now_ns.saturating_sub(since) >= stall_ns {
                    self.trouble_since_ns.get_or_insert(since);
                }
            }
            None => {
                let (answered_at, sent_then) =
                    *self.answered.get_or_insert((now_ns, self.data_sent));
                let flowed = self.data_sent > sent_then;
                if flowed && now_ns.saturating_sub(answered_at) >= stall_ns {
                    self.trouble_since_ns = None;
                }
            }
        }
        if now_ns.saturating_sub(last_sent_ns) > idle_ns {
            self.trouble_since_ns = None;
        }
    }

    /// Forgets the waits and the episode (they were an outage's), keeping the count of data
    /// sent so only data sent from now on is new.
    pub fn forget(&mut self) {
        *self = Self {
            data_sent: self.data_sent,
            ..Self::default()
        };
    }

    /// Since when data has waited, if it does.
    pub fn awaiting(&self) -> Option<u64> {
        self.awaiting_since_ns
    }

    /// Since when the current episode of trouble has lasted, if there is one.
    pub fn trouble(&self) -> Option<u64> {
        self.trouble_since_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn data_waits_for_a_reply_from_the_first_send_after_the_last_reception() {
        let mut silence = Silence::default();
        silence.note(10, 150, Some(100));
        assert_eq!(silence.awaiting(), Some(150));
        silence.note(12, 400, Some(100));
        assert_eq!(silence.awaiting(), Some(150), "still the first");
        silence.note(12, 400, Some(420));
        assert_eq!(silence.awaiting(), None, "answered");
    }

    #[test]
    fn an_episode_outlives_a_stray_reply_and_ends_when_data_is_answered_again() {
        let mut silence = Silence::default();
        silence.note(10, 100 * MS, Some(50 * MS));
        silence.judge(1_200 * MS, 1_000 * MS, 10_000 * MS, 100 * MS);
        assert_eq!(silence.trouble(), Some(100 * MS));
        // An ARP reply; then the next retransmit goes unanswered again.
        silence.note(10, 100 * MS, Some(1_300 * MS));
        silence.judge(1_300 * MS, 1_000 * MS, 10_000 * MS, 100 * MS);
        silence.note(11, 1_600 * MS, Some(1_300 * MS));
        silence.judge(1_700 * MS, 1_000 * MS, 10_000 * MS, 1_600 * MS);
        assert_eq!(silence.trouble(), Some(100 * MS), "the same episode");
        // Data flows and is answered for a second: over.
        for step in 0..12u64 {
            let at = 2_000 * MS + step * 100 * MS;
            silence.note(20 + step, at, Some(at + MS));
            silence.judge(at + 2 * MS, 1_000 * MS, 10_000 * MS, at);
        }
        assert_eq!(silence.trouble(), None);
    }
}
