//! `Subscription`: every state the agent's socket sends, recorded with the time it arrived,
//! and waits on them.
//!
//! The socket is a file, so the client needs no namespace: a plain thread reads it.

use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netwatch_client::state::{Health, NetworkState, Subject};
use netwatch_client::Client;

use crate::netns::block_on_here;

/// One state as it arrived: the first (the state when subscribing) and then each change.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the client read it.
    pub at: Instant,
    /// The subjects whose health changed (empty for the first state).
    pub subjects: Vec<Subject>,
    pub state: NetworkState,
}

impl Seen {
    /// The health of `subject` in this state, if the agent knows it.
    pub fn health(&self, subject: &Subject) -> Option<Health> {
        health(&self.state, subject)
    }

    /// The reasons of `subject`'s verdict, joined with "; " (empty if unknown).
    pub fn reasons(&self, subject: &Subject) -> String {
        reasons(&self.state, subject)
    }
}

/// The health of `subject` in `state`.
pub fn health(state: &NetworkState, subject: &Subject) -> Option<Health> {
    state.verdict(subject).map(|v| v.health)
}

/// The reasons of `subject`'s verdict in `state`, joined with "; ".
pub fn reasons(state: &NetworkState, subject: &Subject) -> String {
    state
        .verdict(subject)
        .map(|v| v.reasons.join("; "))
        .unwrap_or_default()
}

/// Whether `subject` has `health` in `state` with a reason containing `reason` (any reason
/// if `reason` is empty).
pub fn is(state: &NetworkState, subject: &Subject, health: Health, reason: &str) -> bool {
    state
        .verdict(subject)
        .is_some_and(|v| v.health == health && v.reasons.iter().any(|r| r.contains(reason)))
}

#[derive(Default)]
struct History {
    seen: Vec<Seen>,
    /// Why the subscription ended, once it has.
    ended: Option<String>,
}

type Shared = Arc<(Mutex<History>, Condvar)>;

/// A subscription to an agent's socket, read by a thread of its own; ends on drop.
pub struct Subscription {
    history: Shared,
    started: Instant,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Subscribes to the agent at `socket`; returns once the first state arrived.
    pub fn connect(socket: &Path) -> Self {
        let history: Shared = Arc::default();
        let shared = Arc::clone(&history);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let path = socket.to_path_buf();
        let reader = std::thread::Builder::new()
            .name("subscription".into())
            .spawn(move || block_on_here(read(path, shared, ready_tx, stopped)))
            .expect("spawn the subscription thread");
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("subscribing to {}: {e}", socket.display()),
            Err(e) => panic!("subscribing to {}: no first state ({e})", socket.display()),
        }
        let started = history.0.lock().unwrap_or_else(|e| e.into_inner()).seen[0].at;
        Subscription {
            history,
            started,
            stop: Some(stop),
            reader: Some(reader),
        }
    }

    /// How many states have arrived: a mark for [`Subscription::wait_since`].
    pub fn mark(&self) -> usize {
        self.history
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// The latest state.
    pub fn latest(&self) -> Seen {
        let history = self.history.0.lock().unwrap_or_else(|e| e.into_inner());
        history.seen.last().expect("the first state").clone()
    }

    /// Every state that arrived from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<Seen> {
        let history = self.history.0.lock().unwrap_or_else(|e| e.into_inner());
        history.seen[mark.min(history.seen.len())..].to_vec()
    }

    /// Waits until the latest state satisfies `predicate` (at once if it already does).
    pub fn wait_for(
        &self,
        what: &str,
        predicate: impl Fn(&NetworkState) -> bool,
        timeout: Duration,
    ) -> Seen {
        let from = self.mark().saturating_sub(1);
        self.wait_since(from, what, predicate, timeout)
    }

    /// Waits for a state, among those that arrived from `mark` on, that satisfies
    /// `predicate`, and returns the first. Panics with the history on timeout.
    pub fn wait_since(
        &self,
        mark: usize,
        what: &str,
        predicate: impl Fn(&NetworkState) -> bool,
        timeout: Duration,
    ) -> Seen {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.history;
        let mut history = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = mark;
        loop {
            if let Some(found) = history.seen[next.min(history.seen.len())..]
                .iter()
                .find(|seen| predicate(&seen.state))
            {
                return found.clone();
            }
            next = history.seen.len().max(mark);
            let now = Instant::now();
            if history.ended.is_some() || now >= deadline {
                let why = history
                    .ended
                    .clone()
                    .unwrap_or_else(|| "timed out".to_string());
                let described = describe(&history.seen, self.started);
                drop(history);
                panic!("waiting {timeout:?} for {what}: {why}; states seen:\n{described}");
            }
            history = ready
                .wait_timeout(history, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every state seen so far, one line each, for failure messages.
    pub fn describe(&self) -> String {
        describe(
            &self
                .history
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .seen,
            self.started,
        )
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

async fn read(
    path: std::path::PathBuf,
    history: Shared,
    ready: mpsc::Sender<Result<(), String>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let subscribed = async { Client::connect(&path).await?.changes().await };
    let (first, mut changes) = match subscribed.await {
        Ok(subscribed) => subscribed,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let push = |seen: Seen| {
        let (lock, wake) = &*history;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .push(seen);
        wake.notify_all();
    };
    push(Seen {
        at: Instant::now(),
        subjects: Vec::new(),
        state: first.state,
    });
    let _ = ready.send(Ok(()));
    let ended = loop {
        tokio::select! {
            next = changes.next() => match next {
                Ok(Some(change)) => push(Seen {
                    at: Instant::now(),
                    subjects: change.subjects,
                    state: change.state,
                }),
                Ok(None) => break "the agent closed the subscription".to_string(),
                Err(e) => break format!("the subscription failed: {e}"),
            },
            _ = &mut stop => break "the subscription was dropped".to_string(),
        }
    };
    let (lock, wake) = &*history;
    lock.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(ended);
    wake.notify_all();
}

/// One line per state: its time since the first, the changed subjects, and every verdict.
fn describe(seen: &[Seen], started: Instant) -> String {
    seen.iter()
        .map(|seen| {
            let state = &seen.state;
            let mut parts = vec![format!(
                "host={} ({})",
                state.host.health,
                state.host.reasons.join("; ")
            )];
            for (name, link) in &state.links {
                parts.push(format!(
                    "link:{name}={} ({})",
                    link.verdict.health,
                    link.verdict.reasons.join("; ")
                ));
            }
            for (name, endpoint) in &state.endpoints {
                parts.push(format!(
                    "endpoint:{name}={} ({})",
                    endpoint.verdict.health,
                    endpoint.verdict.reasons.join("; ")
                ));
            }
            let changed: Vec<String> = seen.subjects.iter().map(ToString::to_string).collect();
            format!(
                "  +{:.3}s [{}] {}",
                seen.at.saturating_duration_since(started).as_secs_f64(),
                changed.join(","),
                parts.join(" | ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
