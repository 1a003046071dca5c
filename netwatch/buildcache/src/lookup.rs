//! Finding an entry on the mirrors within a deadline: best first (the scoreboard's figures and
//! the agent's verdicts), a mirror the agent calls Down never asked, the next one asked when
//! the first has not answered within the hedge delay or failed. The hedge delay is four
//! times the mirror's usual answer time (at least 5 ms), capped by the configured one: on a
//! LAN a stranded request is given up on in milliseconds, on a far link after its round trip. A mirror's "not found" is
//! the answer (every mirror is written every entry): asking the others too would make every
//! miss of a cold build cost a round trip per mirror. A miss is an answer a build tool acts
//! on at once (it compiles), so when the deadline comes, the answer is a miss.

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{stream::FuturesUnordered, StreamExt};
use netwatch_transfer::{MirrorStore, Scoreboard};

use crate::{
    budget::{Budget, Room},
    entry::SEAL_OVERHEAD,
    stats::Stats,
    verdicts::Verdicts,
    EntryKey,
};

/// The shortest hedge delay: below it, scheduling noise alone would ask a second mirror.
const MIN_HEDGE: Duration = Duration::from_millis(5);
/// The hedge delay in units of a mirror's usual answer time.
const HEDGE_FACTOR: u32 = 4;

/// What the mirrors said.
#[derive(Debug)]
pub enum Found {
    /// The sealed entry, its content (checked once, here), the index of the mirror that
    /// served it, and the share of the memory budget the entry holds.
    Hit {
        sealed: Bytes,
        content: Bytes,
        mirror: usize,
        room: Room,
    },
    /// No mirror had it (or none could be asked).
    Miss,
    /// The deadline came first.
    Late,
}

/// The mirrors and how to ask them.
pub struct Lookup {
    pub mirrors: Vec<MirrorStore>,
    pub verdicts: Verdicts,
    /// The figures mirrors are ranked by (from the last `netwatch mirrors` or `get`).
    pub board: Scoreboard,
    /// How long a mirror may take before the next is asked too.
    pub hedge: Duration,
    /// How long a lookup may take in all.
    pub deadline: Duration,
    /// The largest content an entry may have.
    pub max_entry: u64,
}

impl Lookup {
    /// The indices of the mirrors to ask, best first; those the agent calls Down left out.
    pub fn order(&self) -> Vec<usize> {
        let state = self.verdicts.current();
        self.board
            .ranked(&self.mirrors, state.as_deref())
            .into_iter()
            .map(|ranked| ranked.index)
            .filter(|&index| !self.verdicts.is_down(&self.mirrors[index]))
            .collect()
    }

    /// How long mirror `index` has before the next is asked too.
    fn hedge_for(&self, index: usize, stats: &Stats) -> Duration {
        match stats.mirrors[index].answer_time() {
            Some(usual) => (usual * HEDGE_FACTOR).clamp(MIN_HEDGE, self.hedge.max(MIN_HEDGE)),
            None => self.hedge,
        }
    }

    /// Looks `key` up, counting each mirror asked in `stats`. Each answer waits for its
    /// share of `budget` before its body is read: mirrors that answer every lookup with the
    /// largest entry allowed cannot take more memory than the budget.
    pub async fn find(&self, key: &EntryKey, stats: &Stats, budget: &Budget) -> Found {
        let order = self.order();
        let mut waiting = order.into_iter();
        let mut asked = FuturesUnordered::new();
        let ask = |index: usize| {
            let mirror = &self.mirrors[index];
            Stats::count(&stats.mirrors[index].asked);
            let path = key.object_path();
            let limit = self.max_entry + SEAL_OVERHEAD as u64;
            let started = Instant::now();
            async move {
                let read = mirror.read_object_within(&path, limit, |size| budget.room(size));
                (index, started, read.await)
            }
        };
        let mut deadline = pin!(tokio::time::sleep(self.deadline));
        let mut hedge = pin!(tokio::time::sleep(self.hedge));
        loop {
            if asked.is_empty() {
                match waiting.next() {
                    Some(index) => {
                        asked.push(ask(index));
                        let delay = self.hedge_for(index, stats);
                        hedge.as_mut().reset(tokio::time::Instant::now() + delay);
                    }
                    None => return Found::Miss,
                }
            }
            tokio::select! {
                () = &mut deadline => return Found::Late,
                () = &mut hedge, if waiting.len() > 0 => {
                    if let Some(index) = waiting.next() {
                        asked.push(ask(index));
                        let delay = self.hedge_for(index, stats);
                        hedge.as_mut().reset(tokio::time::Instant::now() + delay);
                    }
                }
                Some((index, started, answer)) = asked.next() => {
                    let mirror = self.mirrors[index].name();
                    if answer.as_ref().is_ok() || answer.as_ref().is_err_and(|e| e.is_not_found()) {
                        stats.mirrors[index].observe_answer(started.elapsed());
                    }
                    match answer {
                        Ok((stored, room)) => {
                            let sealed = Bytes::from(stored);
                            match key.open(&sealed) {
                                Ok(content) => return Found::Hit { sealed, content, mirror: index, room },
                                Err(why) => tracing::warn!(mirror, key = key.path(), %why, "a mirror's build cache entry does not check out: asking the next"),
                            }
                        }
                        // Not there: a miss, unless a hedged request is still out.
                        Err(error) if error.is_not_found() => {
                            if asked.is_empty() {
                                return Found::Miss;
                            }
                        }
                        Err(error) => tracing::debug!(%error, "build cache lookup: asking the next mirror"),
                    }
                }
            }
        }
    }
}
