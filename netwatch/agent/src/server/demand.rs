//! Clients waiting on a subject whose verdict is Unknown: passed on to the agent, which may
//! then gather evidence (docs/verdict.md, "Evidence on demand").

use std::time::Duration;

use tokio::sync::mpsc;

use crate::state::{Health, StateWatch, Subject};

/// How often a waiting client's demand is repeated while the subject stays Unknown.
const REPEAT: Duration = Duration::from_secs(1);

/// The sending side of the agent's demand queue. A full queue drops the demand: the next
/// repeat carries it, and the agent never falls behind waiting clients.
#[derive(Clone, Debug)]
pub struct Demand(Option<mpsc::Sender<Subject>>);

impl Demand {
    /// A queue for the agent, which reads the other end.
    pub fn channel() -> (Self, mpsc::Receiver<Subject>) {
        let (sender, receiver) = mpsc::channel(64);
        (Self(Some(sender)), receiver)
    }

    /// No agent to tell (tests, or evidence on demand turned off).
    pub fn none() -> Self {
        Self(None)
    }

    /// Tells the agent, once a second for as long as this runs, that a client waits on
    /// `subject` while it is Unknown. Runs until cancelled.
    pub async fn while_unknown(&self, state: &StateWatch, subject: &Subject) {
        let Some(sender) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            let unknown = state
                .verdict(subject)
                .is_some_and(|v| v.health == Health::Unknown);
            if unknown {
                let _ = sender.try_send(subject.clone());
            }
            tokio::time::sleep(REPEAT).await;
        }
    }
}
