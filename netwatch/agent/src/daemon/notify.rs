//! The service manager's side of readiness, as sd_notify(3) speaks it: one datagram of
//! `KEY=VALUE` lines to the Unix socket `$NOTIFY_SOCKET` names (a path, or `@name` in the
//! abstract namespace). systemd starts units that follow `netwatch.service` (`Type=notify`)
//! only once `READY=1` arrives, which the agent sends when every program is attached and the
//! socket serves. Without `$NOTIFY_SOCKET` (started by hand) nothing is sent.

use std::{
    io,
    os::{linux::net::SocketAddrExt, unix::net::SocketAddr, unix::net::UnixDatagram},
};

use tracing::warn;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A socket connected to the service manager, if one is listening.
pub struct Notifier(Option<UnixDatagram>);

impl Notifier {
    /// Tells nobody.
    pub fn none() -> Self {
        Self(None)
    }

    /// Connects to `$NOTIFY_SOCKET`, and takes the variable out of the environment so that
    /// nothing the agent starts notifies in its name. Done before privileges are dropped and
    /// the seccomp filter installed: the socket is then only written to.
    pub fn from_env() -> Result<Self, io::Error> {
        let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
            return Ok(Self(None));
        };
        // At start-up, before the agent starts any thread of its own that reads the
        // environment.
        std::env::remove_var(NOTIFY_SOCKET);
        let target = target.to_string_lossy().into_owned();
        let address = match target.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if target.starts_with('/') => SocketAddr::from_pathname(&target)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{NOTIFY_SOCKET}={target} is neither a path nor an @abstract name"),
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(&address)?;
        Ok(Self(Some(socket)))
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`, one per line). A failure is
    /// logged: the agent works the same whether its manager hears it or not.
    pub fn send(&self, state: &str) {
        if let Some(socket) = &self.0 {
            if let Err(e) = socket.send(state.as_bytes()) {
                warn!(error = %e, state, "telling the service manager failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_manager_nothing_is_sent_and_with_one_the_state_arrives() {
        // One test, so nothing else in this process reads NOTIFY_SOCKET meanwhile.
        std::env::remove_var(NOTIFY_SOCKET);
        let silent = Notifier::from_env().unwrap();
        assert!(silent.0.is_none());
        silent.send("READY=1");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        std::env::set_var(NOTIFY_SOCKET, &path);
        let notifier = Notifier::from_env().unwrap();
        assert!(
            std::env::var_os(NOTIFY_SOCKET).is_none(),
            "the variable stays for children to inherit"
        );
        notifier.send("READY=1\nSTATUS=watching 2 links");
        let mut buffer = [0u8; 128];
        let n = manager.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=watching 2 links");

        std::env::set_var(NOTIFY_SOCKET, "relative/path");
        let error = Notifier::from_env().err().unwrap();
        assert!(error.to_string().contains("neither a path"), "{error}");
    }
}
