//! Where a retryer reads the verdict: one trait over a [`StateWatch`] (the monitor in this
//! process, a test's channel) and the agent's socket, reached only when a failure needs it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use tokio::{sync::Mutex, time::Instant};

use crate::{
    client::{Client, ClientError},
    state::StateWatch,
};

/// A source of network state for a retryer. Asked only after an attempt fails, so an
/// operation that succeeds never touches it.
pub trait StateSource: Send + Sync {
    /// A watch of the latest state, connecting first if need be, or why there is none now.
    fn watch(&self) -> BoxFuture<'_, Result<StateWatch, SourceUnavailable>>;
}

/// Why a state source gave no state.
#[derive(Debug, thiserror::Error)]
pub enum SourceUnavailable {
    /// The source stopped sending: the agent stopped, or the sender of a channel was dropped.
    #[error("the state source closed: the agent stopped, or whatever fed the state is gone")]
    Closed,
    /// The agent could not be reached; the error says why and what to do.
    #[error(transparent)]
    Agent(#[from] ClientError),
    /// The agent accepted the connection but did not answer the subscription in time.
    #[error(
        "the netwatch agent at {} did not answer a subscription within {}: it may be \
         overloaded or stuck",
        path.display(),
        humantime::format_duration(*waited)
    )]
    Slow { path: PathBuf, waited: Duration },
    /// Connecting failed a moment ago; it is not tried again before `retry_in` has passed.
    #[error(
        "the netwatch agent at {} could not be reached a moment ago; trying again in {}",
        path.display(),
        humantime::format_duration(*retry_in)
    )]
    RecentlyFailed { path: PathBuf, retry_in: Duration },
}

impl StateSource for StateWatch {
    fn watch(&self) -> BoxFuture<'_, Result<StateWatch, SourceUnavailable>> {
        let watch = if self.is_closed() {
            Err(SourceUnavailable::Closed)
        } else {
            Ok(self.clone())
        };
        futures::future::ready(watch).boxed()
    }
}

impl<S: StateSource + ?Sized> StateSource for Arc<S> {
    fn watch(&self) -> BoxFuture<'_, Result<StateWatch, SourceUnavailable>> {
        (**self).watch()
    }
}

/// The agent's socket, connected (and subscribed to) on first need and again after it
/// closes. A retryer whose operations succeed never connects.
pub struct AgentSource {
    path: PathBuf,
    /// How long connecting and the first state may take: this delays a retry, so it is short.
    connect_timeout: Duration,
    /// After a failed connect, how long to answer "unavailable" without trying again, so a
    /// missing or stuck agent costs a retry nothing.
    reconnect_after: Duration,
    connection: Mutex<Connection>,
}

enum Connection {
    Never,
    Subscribed(StateWatch),
    Failed(Instant),
}

impl AgentSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            connect_timeout: Duration::from_secs(1),
            reconnect_after: Duration::from_secs(5),
            connection: Mutex::new(Connection::Never),
        }
    }

    /// The socket the agent serves by default: `NETWATCH_SOCKET`, else
    /// `/run/netwatch/netwatch.sock`.
    pub fn default_socket() -> Self {
        Self::new(crate::paths::default_socket_path())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn connect(&self) -> Result<StateWatch, SourceUnavailable> {
        let subscribe = async { Client::connect(&self.path).await?.subscribe().await };
        match tokio::time::timeout(self.connect_timeout, subscribe).await {
            Ok(watch) => Ok(watch?),
            Err(_) => Err(SourceUnavailable::Slow {
                path: self.path.clone(),
                waited: self.connect_timeout,
            }),
        }
    }
}

impl StateSource for AgentSource {
    fn watch(&self) -> BoxFuture<'_, Result<StateWatch, SourceUnavailable>> {
        async move {
            // Held across the connect, so that concurrent retries share one connection.
            let mut connection = self.connection.lock().await;
            match &*connection {
                Connection::Subscribed(watch) if !watch.is_closed() => return Ok(watch.clone()),
                Connection::Failed(at) if at.elapsed() < self.reconnect_after => {
                    return Err(SourceUnavailable::RecentlyFailed {
                        path: self.path.clone(),
                        retry_in: self.reconnect_after.saturating_sub(at.elapsed()),
                    })
                }
                _ => {}
            }
            match self.connect().await {
                Ok(watch) => {
                    *connection = Connection::Subscribed(watch.clone());
                    Ok(watch)
                }
                Err(error) => {
                    *connection = Connection::Failed(Instant::now());
                    Err(error)
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NetworkState;

    #[tokio::test]
    async fn a_watch_is_unavailable_once_its_sender_is_gone() {
        let (sender, watch) = StateWatch::channel(NetworkState::initial(0));
        assert!(StateSource::watch(&watch).await.is_ok());
        sender.send_replace(Arc::new(NetworkState::initial(1)));
        drop(sender);
        assert!(matches!(
            StateSource::watch(&watch).await,
            Err(SourceUnavailable::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_agent_is_not_asked_again_until_the_reconnect_interval_passes() {
        let dir = tempfile::tempdir().unwrap();
        let source = AgentSource::new(dir.path().join("absent.sock"));
        assert!(matches!(
            source.watch().await,
            Err(SourceUnavailable::Agent(ClientError::NotRunning { .. }))
        ));
        assert!(matches!(
            source.watch().await,
            Err(SourceUnavailable::RecentlyFailed { .. })
        ));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(
            source.watch().await,
            Err(SourceUnavailable::Agent(_))
        ));
    }
}
