//! The socket file: its directory, a stale file left by an agent that died, and who may
//! connect (mode and group).

use std::{
    fs::{self, DirBuilder, Permissions},
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::Path,
};

use tokio::net::{UnixListener, UnixStream};

use super::{group, ServerError, ServerOptions};

/// Binds the agent's socket as `options` say; see [`super::bind`].
pub(super) async fn bind(options: &ServerOptions) -> Result<UnixListener, ServerError> {
    let path = &options.path;
    // Before touching the file system, so that a typo in the group changes nothing.
    let gid = match &options.group {
        Some(name) => Some(
            group::gid_of(name)
                .map_err(|source| ServerError::LookupGroup {
                    group: name.clone(),
                    source,
                })?
                .ok_or_else(|| ServerError::UnknownGroup {
                    group: name.clone(),
                })?,
        ),
        None => None,
    };
    create_parent(path)?;
    remove_stale(path).await?;
    // The socket file is created with the process umask; until `restrict` sets the chosen
    // mode, only root may connect.
    // SAFETY: umask cannot fail; the agent binds before it starts any other thread's work.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(previous) };
    let listener = bound.map_err(|source| ServerError::Bind {
        path: path.clone(),
        source,
    })?;
    if let Err(error) = restrict(options, gid) {
        // A socket with the wrong permissions must not stay behind.
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(listener)
}

fn create_parent(path: &Path) -> Result<(), ServerError> {
    let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|source| ServerError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })
}

/// Removes `path` if it is a socket nobody answers on: what an agent that died leaves.
async fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let inspect = |source| ServerError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(inspect(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
    }
    match UnixStream::connect(path).await {
        // A full accept queue (EAGAIN) also means someone listens.
        Ok(_) => Err(ServerError::AlreadyServing {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ServerError::AlreadyServing {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(ServerError::RemoveStale {
                path: path.to_path_buf(),
                source: e,
            }),
            _ => {
                tracing::info!(path = %path.display(), "removed a stale socket");
                Ok(())
            }
        },
        Err(e) => Err(inspect(e)),
    }
}

/// Group first, then mode, so the mode is the last word (chown may clear mode bits).
fn restrict(options: &ServerOptions, gid: Option<u32>) -> Result<(), ServerError> {
    let path = &options.path;
    if let (Some(gid), Some(group)) = (gid, &options.group) {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| {
            ServerError::SetGroup {
                path: path.clone(),
                group: group.clone(),
                source,
            }
        })?;
    }
    fs::set_permissions(path, Permissions::from_mode(options.mode)).map_err(|source| {
        ServerError::SetMode {
            path: path.clone(),
            mode: options.mode,
            source,
        }
    })
}
