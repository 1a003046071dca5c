//! Entering a named network namespace (as `ip netns` names them) before any thread exists.
//!
//! `setns` moves only the calling thread, so this must run before the async runtime starts:
//! the runtime's threads then inherit the namespace. Unlike `ip netns exec`, this leaves the
//! mount namespace alone, so tracefs stays visible.

use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

/// Where `ip netns add` puts its namespace files.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace {name:?} not found at {path}: {source} (list them with `ip netns list`)"
    )]
    Open {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("entering network namespace {name:?} failed (needs CAP_SYS_ADMIN): {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
}

/// Moves the calling thread into the network namespace `name`.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let path = PathBuf::from(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    // SAFETY: the fd is valid for the duration of the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Enter {
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
