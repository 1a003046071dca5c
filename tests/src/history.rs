//! `History`: what one method observed, each entry stamped with the monotonic time it was
//! observed, written by that method's thread and searched by the round that injected a fault.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

struct Entries<T> {
    items: Vec<(i64, T)>,
    /// Why the writer stopped, once it has: a wait then ends at once instead of at its
    /// deadline.
    ended: Option<String>,
}

/// An append-only, time-stamped log shared between one writer and any number of readers.
pub struct History<T> {
    inner: Arc<(Mutex<Entries<T>>, Condvar)>,
}

impl<T> Clone for History<T> {
    fn clone(&self) -> Self {
        History {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone> Default for History<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> History<T> {
    pub fn new() -> Self {
        History {
            inner: Arc::new((
                Mutex::new(Entries {
                    items: Vec::new(),
                    ended: None,
                }),
                Condvar::new(),
            )),
        }
    }

    /// Appends `value`, observed at `at_ns` (CLOCK_MONOTONIC), and wakes waiting readers.
    pub fn push(&self, at_ns: i64, value: T) {
        let (lock, ready) = &*self.inner;
        lock.lock()
            .expect("history lock")
            .items
            .push((at_ns, value));
        ready.notify_all();
    }

    /// Marks the writer as gone.
    pub fn close(&self) {
        self.end("the writer stopped");
    }

    /// Marks the writer as gone, saying why.
    pub fn end(&self, why: impl Into<String>) {
        let (lock, ready) = &*self.inner;
        lock.lock().expect("history lock").ended = Some(why.into());
        ready.notify_all();
    }

    /// Why the writer stopped, if it has.
    pub fn ended(&self) -> Option<String> {
        self.inner.0.lock().expect("history lock").ended.clone()
    }

    /// How many entries there are: a mark for [`History::since`] and
    /// [`History::wait_from_mark`].
    pub fn len(&self) -> usize {
        self.inner.0.lock().expect("history lock").items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<(i64, T)> {
        let entries = self.inner.0.lock().expect("history lock");
        entries.items[mark.min(entries.items.len())..].to_vec()
    }

    /// The first entry from `mark` on for which `matches` holds, waiting for it until
    /// `deadline`; else why not (timed out, or why the writer stopped).
    pub fn wait_from_mark(
        &self,
        mark: usize,
        deadline: Instant,
        mut matches: impl FnMut(&T) -> bool,
    ) -> Result<(i64, T), String> {
        let (lock, ready) = &*self.inner;
        let mut entries = lock.lock().expect("history lock");
        let mut next = mark;
        loop {
            if let Some(found) = entries.items[next.min(entries.items.len())..]
                .iter()
                .find(|(_, value)| matches(value))
            {
                return Ok(found.clone());
            }
            next = entries.items.len().max(mark);
            let now = Instant::now();
            if let Some(why) = &entries.ended {
                return Err(why.clone());
            }
            if now >= deadline {
                return Err("timed out".to_string());
            }
            entries = ready
                .wait_timeout(entries, deadline - now)
                .expect("history lock")
                .0;
        }
    }

    /// The latest entry, if any.
    pub fn last(&self) -> Option<(i64, T)> {
        self.inner
            .0
            .lock()
            .expect("history lock")
            .items
            .last()
            .cloned()
    }

    /// Every entry observed in `from_ns..=to_ns`.
    pub fn between(&self, from_ns: i64, to_ns: i64) -> Vec<(i64, T)> {
        let entries = self.inner.0.lock().expect("history lock");
        entries
            .items
            .iter()
            .filter(|(at, _)| (from_ns..=to_ns).contains(at))
            .cloned()
            .collect()
    }

    /// The first entry observed at or after `after_ns` for which `matches(previous, entry)`
    /// holds (`previous` is the entry before it, whenever that was observed), waiting for it
    /// until `deadline`. `None` if none came in time or the writer stopped.
    pub fn wait_first(
        &self,
        after_ns: i64,
        deadline: Instant,
        mut matches: impl FnMut(Option<&T>, &T) -> bool,
    ) -> Option<(i64, T)> {
        let (lock, ready) = &*self.inner;
        let mut entries = lock.lock().expect("history lock");
        // Entries arrive in time order from one writer, so the search resumes where it stopped.
        let mut next = entries.items.partition_point(|(at, _)| *at < after_ns);
        loop {
            while next < entries.items.len() {
                let previous = next.checked_sub(1).map(|i| &entries.items[i].1);
                let (at, value) = &entries.items[next];
                if *at >= after_ns && matches(previous, value) {
                    return Some((*at, value.clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if entries.ended.is_some() || now >= deadline {
                return None;
            }
            entries = ready
                .wait_timeout(entries, deadline - now)
                .expect("history lock")
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn finds_the_first_match_after_a_time_with_its_predecessor() {
        let history = History::new();
        for (at, value) in [(10, 1), (20, 3), (30, 3), (40, 7)] {
            history.push(at, value);
        }
        let soon = Instant::now() + Duration::from_millis(10);
        // Growth since the previous entry, looking from t=25 on: 30 has none, 40 has.
        let grew = history.wait_first(25, soon, |prev, cur| prev.is_some_and(|p| cur > p));
        assert_eq!(grew, Some((40, 7)));
        assert_eq!(history.wait_first(0, soon, |_, v| *v == 3), Some((20, 3)));
        assert_eq!(history.wait_first(41, soon, |_, _| true), None);
        assert_eq!(history.between(15, 30).len(), 2);
    }

    #[test]
    fn a_wait_sees_entries_pushed_later_and_ends_when_closed() {
        let history = History::new();
        let writer = history.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.push(5, "late");
            writer.close();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            history.wait_first(0, deadline, |_, _| true),
            Some((5, "late"))
        );
        assert_eq!(history.wait_first(6, deadline, |_, _| true), None);
        handle.join().expect("writer");
    }
}
