//! `Subscription`: every state the agent's socket sends, stamped with the time the client
//! had it (the latency a consumer gets), and waits on them; for the tests and the bench.
//!
//! The socket is a file, so the client needs no namespace: a plain thread reads it.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use netwatch_client::state::{Health, NetworkState, Subject};
use netwatch_client::Client;

use crate::clock::now_ns;
use crate::history::History;
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

    /// When `subject`'s health last changed, by the agent's CLOCK_MONOTONIC.
    pub fn since_ns(&self, subject: &Subject) -> Option<i64> {
        self.state.verdict(subject).map(|v| v.since_ns as i64)
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

/// A subscription to an agent's socket, read by a thread of its own; ends on drop.
pub struct Subscription {
    /// Every state, stamped by CLOCK_MONOTONIC ([`crate::clock::now_ns`]) on arrival.
    pub seen: History<Seen>,
    started: Instant,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Subscribes to the agent at `socket`; returns once the first state arrived. Panics if
    /// it does not within 15 s.
    pub fn connect(socket: &Path) -> Self {
        Self::start(socket).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Like [`Subscription::connect`], with an error instead of a panic.
    pub fn start(socket: &Path) -> Result<Self> {
        let seen = History::new();
        let writer = seen.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let path = socket.to_path_buf();
        let reader = std::thread::Builder::new()
            .name("subscription".into())
            .spawn(move || block_on_here(read(path, writer, ready_tx, stopped)))?;
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("subscribing to {}: {e}", socket.display()),
            Err(e) => bail!("subscribing to {}: no first state ({e})", socket.display()),
        }
        let started = seen.since(0)[0].1.at;
        Ok(Subscription {
            seen,
            started,
            stop: Some(stop),
            reader: Some(reader),
        })
    }

    /// How many states have arrived: a mark for [`Subscription::wait_since`].
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// The latest state.
    pub fn latest(&self) -> Seen {
        self.seen.last().expect("the first state").1
    }

    /// Every state that arrived from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<Seen> {
        self.seen.since(mark).into_iter().map(|(_, s)| s).collect()
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
    /// `predicate`, and returns the first; `None` if none did within `timeout`.
    pub fn try_wait_since(
        &self,
        mark: usize,
        predicate: impl Fn(&NetworkState) -> bool,
        timeout: Duration,
    ) -> Option<Seen> {
        let deadline = Instant::now() + timeout;
        self.seen
            .wait_from_mark(mark, deadline, |seen| predicate(&seen.state))
            .ok()
            .map(|(_, found)| found)
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
        match self
            .seen
            .wait_from_mark(mark, deadline, |seen| predicate(&seen.state))
        {
            Ok((_, found)) => found,
            Err(why) => panic!(
                "waiting {timeout:?} for {what}: {why}; states seen:\n{}",
                self.describe()
            ),
        }
    }

    /// Waits until the latest state has `subject` at `health` (at once if it already is);
    /// false if it did not within `limit`.
    pub fn wait_health(&self, subject: &Subject, health: Health, limit: Duration) -> bool {
        let from = self.mark().saturating_sub(1);
        self.seen
            .wait_from_mark(from, Instant::now() + limit, |s| {
                s.health(subject) == Some(health)
            })
            .is_ok()
    }

    /// Every state seen so far, one line each, for failure messages.
    pub fn describe(&self) -> String {
        describe(&self.since(0), self.started)
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
    history: History<Seen>,
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
    let push = |subjects: Vec<Subject>, state: NetworkState| {
        let at = Instant::now();
        history.push(
            now_ns(),
            Seen {
                at,
                subjects,
                state,
            },
        );
    };
    push(Vec::new(), first.state);
    let _ = ready.send(Ok(()));
    let ended = loop {
        tokio::select! {
            next = changes.next() => match next {
                Ok(Some(change)) => push(change.subjects, change.state),
                Ok(None) => break "the agent closed the subscription".to_string(),
                Err(e) => break format!("the subscription failed: {e}"),
            },
            _ = &mut stop => break "the subscription was dropped".to_string(),
        }
    };
    history.end(ended);
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
