//! Per mirror, over one transfer: requests that moved data, how many served, and for how
//! long at least one was in flight. Bytes over that time is the speed the transfer saw
//! from the mirror, all concurrent requests together, which is what the scoreboard wants.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

use super::{MirrorStore, Summary};

#[derive(Default)]
struct Tally {
    in_flight: u32,
    since: Option<Instant>,
    busy: Duration,
    requests: u64,
    served: u64,
}

pub(crate) struct Activity(Vec<Mutex<Tally>>);

/// A request in flight; ends when dropped (finished, failed or abandoned alike).
pub(crate) struct InFlight<'a> {
    tally: &'a Mutex<Tally>,
}

impl Activity {
    pub(crate) fn new(mirrors: usize) -> Self {
        Self((0..mirrors).map(|_| Mutex::default()).collect())
    }

    /// A data request to mirror `m` begins.
    pub(crate) fn begin(&self, m: usize) -> InFlight<'_> {
        let tally = &self.0[m];
        let mut t = tally.lock().expect("never held across a panic");
        t.requests += 1;
        if t.in_flight == 0 {
            t.since = Some(Instant::now());
        }
        t.in_flight += 1;
        InFlight { tally }
    }

    /// Mirror `m` served an object (it arrived and passed its checks, or it was stored).
    pub(crate) fn served(&self, m: usize) {
        self.0[m].lock().expect("never held across a panic").served += 1;
    }

    /// Adds the figures to the summary's tally of each mirror.
    pub(crate) fn add_to(&self, summary: &mut Summary, mirrors: &[MirrorStore]) {
        for (tally, mirror) in self.0.iter().zip(mirrors) {
            let t = tally.lock().expect("never held across a panic");
            let entry = summary
                .mirrors
                .entry(mirror.name().to_string())
                .or_default();
            entry.requests += t.requests;
            entry.served += t.served;
            entry.busy += t.busy;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut t = self.tally.lock().expect("never held across a panic");
        t.in_flight -= 1;
        if t.in_flight == 0 {
            if let Some(since) = t.since.take() {
                t.busy += since.elapsed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overlapping_requests_count_their_span_once() {
        let activity = Activity::new(2);
        let first = activity.begin(0);
        tokio::time::advance(Duration::from_millis(100)).await;
        let second = activity.begin(0);
        tokio::time::advance(Duration::from_millis(100)).await;
        drop(first);
        tokio::time::advance(Duration::from_millis(100)).await;
        drop(second);
        activity.served(0);
        // Idle time between requests is not busy time.
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(activity.begin(1));
        let t = activity.0[0].lock().unwrap();
        assert_eq!(
            (t.requests, t.served, t.busy),
            (2, 1, Duration::from_millis(300))
        );
        assert_eq!(activity.0[1].lock().unwrap().busy, Duration::ZERO);
    }
}
