//! What an SFTP mirror's failures become: object_store's errors, so that the retry and
//! fallback code treats them as it treats every other mirror's. The server answering with a
//! status is the mirror's fault; `ssh` failing to connect is the network's, unless what it
//! printed says the host key or the login was refused, which no retry mends.

use std::{io, process::ExitStatus};

use object_store::Error;
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};

/// The store name object_store's generic errors carry.
pub(super) const STORE: &str = "SFTP";

/// What the server said of a request about `path`, or why the session failed.
pub(super) fn request_failed(path: &str, error: SftpError) -> Error {
    match error {
        SftpError::SftpError(kind, message) => {
            let text = format!("the server answered {kind:?}: {}", message.get().0);
            match kind {
                SftpErrorKind::NoSuchFile => Error::NotFound {
                    path: path.to_string(),
                    source: text.into(),
                },
                SftpErrorKind::PermDenied => Error::PermissionDenied {
                    path: path.to_string(),
                    source: format!(
                        "{text} (the server refused access to the path: check that the \
                         mirror's directory belongs to the login user, or fix the URL)"
                    )
                    .into(),
                },
                // The server answered: asking again would get the same answer.
                _ => Error::Generic {
                    store: STORE,
                    source: Box::new(io::Error::new(io::ErrorKind::InvalidInput, text)),
                },
            }
        }
        other => lost(other.to_string()),
    }
}

/// The session ended under a request: the network's fault, retried once it is back.
pub(super) fn lost(why: String) -> Error {
    Error::Generic {
        store: STORE,
        source: Box::new(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the SSH session ended: {why}"),
        )),
    }
}

/// `ssh` could not set up the session; `stderr` is what it printed.
pub(super) fn ssh_failed(destination: &str, status: Option<ExitStatus>, stderr: &str) -> Error {
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("@@@"))
        .collect::<Vec<_>>()
        .join(" ");
    let status = status.map_or_else(|| "did not exit".to_string(), |s| s.to_string());
    let text = format!("ssh {destination} ({status}): {said}");
    if said.contains("Host key verification failed")
        || said.contains("HOST IDENTIFICATION HAS CHANGED")
    {
        Error::PermissionDenied {
            path: destination.to_string(),
            source: format!(
                "{text} (the server's host key is not in known_hosts, or differs from the one \
                 there: netwatch never accepts an unknown key; check its fingerprint with the \
                 server's owner, then add it, e.g. by connecting once with `ssh` by hand)"
            )
            .into(),
        }
    } else if said.contains("Permission denied") {
        Error::Unauthenticated {
            path: destination.to_string(),
            source: format!(
                "{text} (the server refused the login: check the user in the URL and that \
                 its key is loaded (ssh-add) or named by IdentityFile in ~/.ssh/config; \
                 netwatch runs ssh with BatchMode, so it cannot ask for a password)"
            )
            .into(),
        }
    } else {
        Error::Generic {
            store: STORE,
            source: Box::new(io::Error::new(io::ErrorKind::ConnectionAborted, text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_host_key_or_login_is_the_mirrors_fault_and_the_rest_the_networks() {
        let host_key = ssh_failed(
            "mirror",
            None,
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
        );
        assert!(matches!(host_key, Error::PermissionDenied { .. }));
        assert!(host_key
            .to_string()
            .contains("never accepts an unknown key"));
        let login = ssh_failed(
            "mirror",
            None,
            "nobody@127.0.0.1: Permission denied (publickey).",
        );
        assert!(matches!(login, Error::Unauthenticated { .. }));
        let refused = ssh_failed(
            "mirror",
            None,
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused",
        );
        assert_eq!(
            netwatch_client::retry::classify(&refused),
            netwatch_client::retry::ErrorClass::Transient
        );
    }
}
