//! Reads the agent's state over its socket: one request at a time, or a subscription turned
//! into a [`StateWatch`], so consumers read local and remote state through one interface.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixStream,
    },
};

pub use crate::protocol::{Clock, WaitStatus};
use crate::{
    paths::env_vars,
    protocol::{Reply, Request},
    state::{NetworkState, StateWatch, Subject, Verdict},
};

/// How long a reply may take beyond the time the request itself asks for.
const REPLY_GRACE: Duration = Duration::from_secs(10);
/// How often [`Client::connect_waiting`] looks for the agent's socket again.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// What went wrong talking to the agent. Each names the socket and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path: the agent is not running, or listens elsewhere.
    #[error(
        "cannot reach the netwatch agent at {}: {source}; is it running? Start it with \
         `sudo netwatch agent`, or point --socket (or NETWATCH_SOCKET) at the socket it serves",
        path.display()
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket's permissions do not let this user connect.
    #[error(
        "permission denied connecting to the netwatch agent at {}: ask an administrator to \
         add you to {group} (then log in again), or run this as root",
        path.display()
    )]
    PermissionDenied {
        path: PathBuf,
        /// The socket's group, as words: "group `netwatch`" or "the socket's group".
        group: String,
        #[source]
        source: io::Error,
    },
    /// Connecting failed for another reason.
    #[error("connecting to the netwatch agent at {} failed: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The process serving the socket is not the agent: neither root, nor the agent's user,
    /// nor this user.
    #[error(
        "refusing the process serving {} (uid {uid}): the netwatch agent runs as root or as \
         its own user, so someone else may have put a socket in its place. Check who owns \
         that path; if the agent runs as another user, name it in NETWATCH_AGENT_USER",
        path.display()
    )]
    Impostor { path: PathBuf, uid: u32 },
    /// Who serves the socket could not be learned.
    #[error("cannot tell who serves {}: {source}", path.display())]
    PeerUnknown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("talking to the netwatch agent at {} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The agent closed the connection before replying.
    #[error("the netwatch agent at {} closed the connection: it stopped or restarted", path.display())]
    Closed { path: PathBuf },
    /// A reply was not the JSON this client knows.
    #[error(
        "the netwatch agent at {} sent a reply this client does not understand ({source}): \
         are the agent and this client the same version?",
        path.display()
    )]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A reply of another kind than the request calls for.
    #[error(
        "the netwatch agent at {} sent a `{got}` reply to a `{expected}` request: are the \
         agent and this client the same version?",
        path.display()
    )]
    Unexpected {
        path: PathBuf,
        expected: &'static str,
        got: &'static str,
    },
    /// The agent refused the request; the message says why.
    #[error("the netwatch agent at {} refused the request: {message}", path.display())]
    Refused { path: PathBuf, message: String },
    /// No reply in time.
    #[error(
        "the netwatch agent at {} did not reply within {}: it may be overloaded or stuck",
        path.display(),
        humantime::format_duration(*waited)
    )]
    NoReply { path: PathBuf, waited: Duration },
}

/// A state with the server's clocks at the time it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    pub state: NetworkState,
    pub clock: Clock,
}

/// One change seen by a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The subjects whose verdict differs from the previous state received.
    pub subjects: Vec<Subject>,
    pub state: NetworkState,
    pub clock: Clock,
}

/// The answer to a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitReply {
    pub outcome: WaitStatus,
    /// The subject's verdict then; `None` if the agent does not know the subject.
    pub verdict: Option<Verdict>,
    pub clock: Clock,
}

/// A connection to the agent.
pub struct Client {
    path: PathBuf,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            let path = path.to_path_buf();
            match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning { path, source }
                }
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    group: socket_group(&path),
                    path,
                    source,
                },
                _ => ClientError::Connect { path, source },
            }
        })?;
        check_server(&stream, path)?;
        let (read, writer) = stream.into_split();
        Ok(Self {
            path: path.to_path_buf(),
            lines: BufReader::new(read).lines(),
            writer,
        })
    }

    /// Connects, waiting up to `patience` for an agent to serve at `path`: at boot, a
    /// waiter may start before the agent. Only "not running" is waited out; any other error
    /// (permission denied, say) is returned at once.
    pub async fn connect_waiting(path: &Path, patience: Duration) -> Result<Self, ClientError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Self::connect(path).await {
                Err(ClientError::NotRunning { .. })
                    if tokio::time::Instant::now() + CONNECT_RETRY < deadline =>
                {
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent's state now.
    pub async fn get(&mut self) -> Result<NetworkState, ClientError> {
        Ok(self.get_stamped().await?.state)
    }

    /// The agent's state now, with its clocks (to show `since_ns` as wall-clock time).
    pub async fn get_stamped(&mut self) -> Result<Stamped, ClientError> {
        self.send(&Request::Get).await?;
        match self.reply(Some(REPLY_GRACE)).await? {
            Reply::State {
                at_unix_ms,
                now_ns,
                state,
            } => Ok(Stamped {
                state: state.into_owned(),
                clock: Clock { at_unix_ms, now_ns },
            }),
            other => Err(self.unexpected("get", &other)),
        }
    }

    /// Waits until `subject` is Up, or `timeout` has passed (at most a day).
    pub async fn wait(
        &mut self,
        subject: &Subject,
        timeout: Duration,
    ) -> Result<WaitReply, ClientError> {
        self.send(&Request::Wait {
            subject: subject.clone(),
            timeout,
        })
        .await?;
        match self.reply(timeout.checked_add(REPLY_GRACE)).await? {
            Reply::Wait {
                outcome,
                verdict,
                at_unix_ms,
                now_ns,
            } => Ok(WaitReply {
                outcome,
                verdict,
                clock: Clock { at_unix_ms, now_ns },
            }),
            other => Err(self.unexpected("wait", &other)),
        }
    }

    /// Subscribes: the state now, and a stream of changes.
    pub async fn changes(mut self) -> Result<(Stamped, Changes), ClientError> {
        self.send(&Request::Subscribe).await?;
        match self.reply(Some(REPLY_GRACE)).await? {
            Reply::State {
                at_unix_ms,
                now_ns,
                state,
            } => Ok((
                Stamped {
                    state: state.into_owned(),
                    clock: Clock { at_unix_ms, now_ns },
                },
                Changes { client: self },
            )),
            other => Err(self.unexpected("subscribe", &other)),
        }
    }

    /// Subscribes, and keeps a [`StateWatch`] up to date from a background task. When the
    /// connection closes, the task ends and the watch reports the source closed (`changed`
    /// returns `None`, waits return `SourceClosed`). The task also ends when every clone of
    /// the watch is dropped.
    pub async fn subscribe(self) -> Result<StateWatch, ClientError> {
        let (initial, mut changes) = self.changes().await?;
        let (sender, watch) = StateWatch::channel(initial.state);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = changes.next() => match next {
                        Ok(Some(change)) => {
                            sender.send_replace(Arc::new(change.state));
                        }
                        Ok(None) => {
                            tracing::debug!("the agent closed the subscription");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "subscription to the agent ended");
                            return;
                        }
                    },
                    () = sender.closed() => return,
                }
            }
        });
        Ok(watch)
    }

    async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        self.writer
            .write_all(request.to_line().as_bytes())
            .await
            .map_err(|source| self.io_error(source))
    }

    /// The next reply; an error reply becomes [`ClientError::Refused`].
    async fn reply(&mut self, within: Option<Duration>) -> Result<Reply<'static>, ClientError> {
        let line = match within {
            Some(limit) => tokio::time::timeout(limit, self.lines.next_line())
                .await
                .map_err(|_| ClientError::NoReply {
                    path: self.path.clone(),
                    waited: limit,
                })?,
            None => self.lines.next_line().await,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                })
            }
            Err(e) => return Err(self.io_error(e)),
        };
        match serde_json::from_str(&line) {
            Ok(Reply::Error { error }) => Err(ClientError::Refused {
                path: self.path.clone(),
                message: error.into_owned(),
            }),
            Ok(reply) => Ok(reply),
            Err(source) => Err(ClientError::Malformed {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn unexpected(&self, expected: &'static str, got: &Reply<'_>) -> ClientError {
        ClientError::Unexpected {
            path: self.path.clone(),
            expected,
            got: got.kind(),
        }
    }
}

/// A subscription's stream of changes, from [`Client::changes`].
pub struct Changes {
    client: Client,
}

impl Changes {
    /// The next change; `None` once the agent closes the connection (it stopped). Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Change>, ClientError> {
        let reply = match self.client.reply(None).await {
            Err(ClientError::Closed { .. }) => return Ok(None),
            other => other?,
        };
        match reply {
            Reply::Change {
                subjects,
                at_unix_ms,
                now_ns,
                state,
            } => {
                let subjects = subjects
                    .iter()
                    .map(|s| s.parse())
                    .collect::<Result<_, String>>()
                    .map_err(|message| ClientError::Malformed {
                        path: self.client.path.clone(),
                        source: serde::de::Error::custom(message),
                    })?;
                Ok(Some(Change {
                    subjects,
                    state: state.into_owned(),
                    clock: Clock { at_unix_ms, now_ns },
                }))
            }
            other => Err(self.client.unexpected("subscribe", &other)),
        }
    }
}

/// Names the socket's group for a permission error, as well as can be known.
fn socket_group(path: &Path) -> String {
    std::fs::metadata(path)
        .ok()
        .and_then(|meta| crate::accounts::group_name(meta.gid()).ok().flatten())
        .map_or_else(
            || "the socket's group".to_string(),
            |g| format!("group `{g}`"),
        )
}

/// Checks that the socket is served by root, the agent's user (`NETWATCH_AGENT_USER`), or
/// this very user (who cannot be fooled by themself): the kernel says who listens
/// (SO_PEERCRED), whatever the file's owner.
fn check_server(stream: &UnixStream, path: &Path) -> Result<(), ClientError> {
    let uid = stream
        .peer_cred()
        .map_err(|source| ClientError::PeerUnknown {
            path: path.to_path_buf(),
            source,
        })?
        .uid();
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let agent_user = std::env::var(env_vars::NETWATCH_AGENT_USER)
        .ok()
        .filter(|name| !name.is_empty())
        .and_then(|name| crate::accounts::user(&name).ok().flatten())
        .map(|(uid, _)| uid);
    if uid == 0 || uid == me || agent_user == Some(uid) {
        Ok(())
    } else {
        Err(ClientError::Impostor {
            path: path.to_path_buf(),
            uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_that_appears_within_the_patience_is_connected_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let late = path.clone();
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let listener = tokio::net::UnixListener::bind(&late).unwrap();
            let _ = listener.accept().await;
        });
        let client = Client::connect_waiting(&path, Duration::from_secs(10)).await;
        assert!(client.is_ok(), "{:?}", client.err());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_socket_that_never_appears_is_not_running_once_the_patience_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let result =
            Client::connect_waiting(&dir.path().join("absent.sock"), Duration::from_millis(350))
                .await;
        assert!(matches!(result, Err(ClientError::NotRunning { .. })));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
