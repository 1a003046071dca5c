//! The agent's verdicts as the server sees them: followed by a task of their own, so that a
//! request never waits on the agent's socket, and read by every request and upload.

use std::{sync::Arc, time::Duration};

use netwatch_client::{
    retry::StateSource,
    state::{Health, NetworkState, Subject},
};
use netwatch_transfer::MirrorStore;
use tokio::sync::watch;

/// How long to wait before asking an absent agent again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The latest state, `None` while no agent answers.
#[derive(Clone)]
pub struct Verdicts {
    latest: watch::Receiver<Option<Arc<NetworkState>>>,
}

impl Verdicts {
    /// Follows `source` until the returned value and its clones are dropped; without a
    /// source, there are never verdicts (every mirror is tried).
    pub fn follow(source: Option<Arc<dyn StateSource>>) -> Self {
        let (sender, latest) = watch::channel(None);
        if let Some(source) = source {
            tokio::spawn(follow(source, sender));
        }
        Self { latest }
    }

    /// Verdicts from a channel of the caller's (tests).
    pub fn from_channel(latest: watch::Receiver<Option<Arc<NetworkState>>>) -> Self {
        Self { latest }
    }

    pub fn current(&self) -> Option<Arc<NetworkState>> {
        self.latest.borrow().clone()
    }

    /// Whether the agent says `mirror` cannot be reached now: the host is Down, or the
    /// mirror's endpoint is.
    pub fn is_down(&self, mirror: &MirrorStore) -> bool {
        self.worst(mirror) == Some(Health::Down)
    }

    /// Whether the agent says the path to `mirror` is Degraded (and not Down).
    pub fn is_degraded(&self, mirror: &MirrorStore) -> bool {
        self.worst(mirror) == Some(Health::Degraded)
    }

    /// The worse of the host's verdict and the mirror's endpoint's, if either is Down or
    /// Degraded.
    fn worst(&self, mirror: &MirrorStore) -> Option<Health> {
        let state = self.current()?;
        let endpoint = mirror.endpoint().map(|e| Subject::Endpoint(e.to_string()));
        let healths: Vec<Health> = [Some(Subject::Host), endpoint]
            .iter()
            .flatten()
            .filter_map(|subject| Some(state.verdict(subject)?.health))
            .collect();
        [Health::Down, Health::Degraded]
            .into_iter()
            .find(|bad| healths.contains(bad))
    }

    /// Waits for the next change of state (or of the agent's presence).
    pub async fn changed(&mut self) {
        if self.latest.changed().await.is_err() {
            // The follower stopped (no source): nothing will change.
            std::future::pending::<()>().await;
        }
    }
}

async fn follow(source: Arc<dyn StateSource>, sender: watch::Sender<Option<Arc<NetworkState>>>) {
    loop {
        match source.watch().await {
            Ok(mut watch) => {
                sender.send_replace(Some(watch.current()));
                while let Some(state) = watch.changed().await {
                    if sender.send(Some(state)).is_err() {
                        return;
                    }
                }
                tracing::debug!("build cache: the agent's state stream ended");
                sender.send_replace(None);
            }
            Err(error) => tracing::debug!(%error, "build cache: no verdicts from the agent"),
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
