//! Serves the state stream to local programs over a Unix socket: binding the socket (stale
//! files, mode, group), the connection limit, and the protocol of `docs/protocol.md`.

mod connection;
mod demand;
mod slots;
mod socket;
#[cfg(test)]
mod tests;

use std::{io, path::PathBuf, time::Duration};

use tokio::{net::UnixListener, task::JoinSet};
use tracing::{debug, error, warn};

use crate::state::StateWatch;
use connection::Limits;
pub use demand::Demand;
use protocol::Reply;
use slots::Slots;

pub use netwatch_client::{paths::DEFAULT_SOCKET_PATH, protocol};

/// Where to listen and who may connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// The socket file.
    pub path: PathBuf,
    /// Its permission bits, e.g. `0o660`. Connecting needs write permission.
    pub mode: u32,
    /// The group to give it, so that its members may connect (with a mode like `0o660`).
    pub group: Option<String>,
}

/// Why the socket could not be set up. Each says which path or group, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The socket's directory is missing and could not be created.
    #[error("creating the socket directory {} failed: {source}; create it, or choose another socket path", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Something exists at the socket path and could not be examined.
    #[error("checking the existing file at {} failed: {source}; remove it, or choose another socket path", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file that is not a socket is in the way; it is never removed automatically.
    #[error("{} exists and is not a socket: remove it if it is not needed, or choose another socket path", path.display())]
    NotASocket { path: PathBuf },
    /// Another process answers on the socket.
    #[error("another agent is already serving at {}: stop it first, or choose another socket path", path.display())]
    AlreadyServing { path: PathBuf },
    /// A stale socket (nothing answers on it) could not be removed.
    #[error("removing the stale socket {} failed: {source}; remove it by hand", path.display())]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Binding failed (e.g. a path longer than the 107 bytes a socket address holds).
    #[error("listening on {} failed: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The configured mode could not be applied.
    #[error("setting mode {mode:o} on {} failed: {source}", path.display())]
    SetMode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    /// Others could write to the socket's directory, and so swap the socket under root.
    #[error(
        "the socket directory {} is not safe for root to create a socket in: {why}; \
         choose a directory only root can write (the default, /run/netwatch, is created 0755)",
        dir.display()
    )]
    UnsafeDirectory { dir: PathBuf, why: String },
    /// The configured group does not exist.
    #[error("group `{group}` does not exist: create it (`groupadd {group}`), or configure an existing group for the socket")]
    UnknownGroup { group: String },
    /// The group database could not be read.
    #[error("looking up group `{group}` failed: {source}")]
    LookupGroup {
        group: String,
        #[source]
        source: io::Error,
    },
    /// The socket could not be given the configured group (only root, or a member of it, may).
    #[error("giving {} to group `{group}` failed: {source}; run the agent as root or as a member of `{group}`", path.display())]
    SetGroup {
        path: PathBuf,
        group: String,
        #[source]
        source: io::Error,
    },
}

/// Binds the agent's socket: creates its directory (0755) if missing, replaces a stale socket
/// file that nothing answers on (and nothing else), then applies the group and mode.
pub async fn bind(options: &ServerOptions) -> Result<UnixListener, ServerError> {
    socket::bind(options).await
}

/// Serves clients until the state source goes away. Accept errors that come and go (too many
/// open files, a client that gave up) are logged and retried; others end it with the error.
/// Dropping the future closes every connection. A client waiting on an Unknown subject is
/// passed on to `demand`, so the agent can gather evidence.
pub async fn serve(listener: UnixListener, state: StateWatch, demand: Demand) -> io::Result<()> {
    serve_with(listener, state, demand, Limits::DEFAULT).await
}

async fn serve_with(
    listener: UnixListener,
    state: StateWatch,
    demand: Demand,
    limits: Limits,
) -> io::Result<()> {
    let slots = Slots::new(limits.slots);
    let mut connections = JoinSet::new();
    let mut source = state.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // The kernel's word on who connected; one it cannot give is nobody's.
                    let uid = stream.peer_cred().map_or(u32::MAX, |cred| cred.uid());
                    match slots.take(uid) {
                        Ok(slot) => {
                            let state = state.clone();
                            let demand = demand.clone();
                            connections.spawn(async move {
                                if let Err(e) = connection::run(stream, state, demand, limits).await {
                                    debug!(error = %e, "client connection ended");
                                }
                                drop(slot);
                            });
                        }
                        Err(why) => {
                            warn!(uid, "refused a client: {why}");
                            let refusal = Reply::Error { error: why.into() };
                            // A new socket's buffer is empty, so this does not block; if it
                            // fails, the client sees the connection close instead.
                            let _ = stream.try_write(&refusal.to_line());
                        }
                    }
                }
                Err(e) if is_transient(&e) => {
                    warn!(error = %e, "accepting a client failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            },
            Some(done) = connections.join_next() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        error!(error = %e, "a client connection panicked");
                    }
                }
            }
            next = source.changed() => if next.is_none() {
                debug!("the state source closed: no longer serving");
                return Ok(());
            },
        }
    }
}

/// accept(2) errors that say nothing about the listener itself.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
                | libc::EPERM
        )
    )
}
