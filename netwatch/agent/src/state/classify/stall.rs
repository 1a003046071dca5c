//! Following an endpoint's stall: it starts with a retransmit after a timeout without
//! progress (RTO backoff 1 or more) and ends with progress: new data beyond what was
//! retransmitted, a connect that works, a RST from it (an answer: the path works), or, where
//! nothing counts what is sent to it, a packet from it.
//!
//! The kernel's counters are per destination, not per connection. One socket in backoff
//! beside others that make progress (an abandoned transfer's socket still retransmitting while
//! a new transfer runs) is not a blackhole: so a stall counts only once a later look, at
//! least `CONFIRM_NS` on, still finds no progress, and a stall that progress ended is not taken
//! up again from the same retransmit.

use crate::state::EndpointObservation;

use super::endpoint::Stall;

const CONFIRM_NS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, Default)]
pub struct StallTrack {
    mark: Option<Mark>,
    /// The latest stall retransmit that progress has answered.
    ended_ns: u64,
}

/// What the stall looked like when it was first seen, to tell progress since.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at_ns: u64,
    timeouts: u32,
    data_segs: u64,
    retrans_segs: u64,
    resets: u64,
    /// When it was first seen, and whether a later look confirmed it.
    seen_ns: u64,
    confirmed: bool,
}

impl StallTrack {
    /// Moves the stall on with the latest counters; returns it once confirmed. A stall
    /// retransmit at or before `not_before_ns` (its link came back since) is the link's
    /// outage, not the endpoint's.
    pub fn follow(
        &mut self,
        obs: &EndpointObservation,
        data_segs: u64,
        last_rx_ns: Option<u64>,
        now_ns: u64,
        not_before_ns: u64,
    ) -> Option<Stall> {
        let tcp = &obs.tcp;
        let latest_is_stall = tcp.last_stall_ns != 0 && tcp.last_retrans_ns == tcp.last_stall_ns;
        let stale = tcp.last_stall_ns <= self.ended_ns.max(not_before_ns);
        if !latest_is_stall || stale {
            self.mark = None;
            return None;
        }
        let mark = match self.mark {
            // The same stall, one more timeout on: progress still counts from where it began.
            Some(m) if m.at_ns <= tcp.last_stall_ns => Mark {
                at_ns: tcp.last_stall_ns,
                timeouts: tcp.stall_backoff + 1,
                ..m
            },
            _ => Mark {
                at_ns: tcp.last_stall_ns,
                timeouts: tcp.stall_backoff + 1,
                data_segs,
                retrans_segs: tcp.retrans_segs,
                resets: tcp.resets_received,
                seen_ns: now_ns,
                confirmed: false,
            },
        };
        let new_data = data_segs.saturating_sub(mark.data_segs);
        let resent = tcp.retrans_segs.saturating_sub(mark.retrans_segs);
        let progress = new_data > resent + 2
            || tcp.last_connect_ok_ns > mark.at_ns
            || tcp.resets_received > mark.resets
            || (obs.peer.is_none() && last_rx_ns.is_some_and(|rx| rx > mark.at_ns));
        if progress {
            self.ended_ns = tcp.last_stall_ns;
            self.mark = None;
            return None;
        }
        let confirmed = mark.confirmed || now_ns.saturating_sub(mark.seen_ns) >= CONFIRM_NS;
        self.mark = Some(Mark { confirmed, ..mark });
        confirmed.then_some(Stall {
            timeouts: mark.timeouts,
            at_ns: mark.at_ns,
        })
    }
}
