//! The socket file: its directory, a stale file left by an agent that died, and who may
//! connect (mode and group).
//!
//! The agent is root here, so no step may follow a name an unprivileged user could swap: the
//! directory must be one only root (or the agent's own user) can write, and the group and
//! mode are set with calls that never follow a symbolic link.

use std::{
    fs::{self, DirBuilder},
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt},
    path::Path,
};

use tokio::net::{UnixListener, UnixStream};

use super::{ServerError, ServerOptions};
use crate::accounts;

/// Binds the agent's socket as `options` say; see [`super::bind`].
pub(super) async fn bind(options: &ServerOptions) -> Result<UnixListener, ServerError> {
    let path = &options.path;
    // Before touching the file system, so that a typo in the group changes nothing.
    let gid = match &options.group {
        Some(name) => Some(
            accounts::gid_of(name)
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
    check_directory(path)?;
    remove_stale(path).await?;
    // Created owner-only, opened up once the group is set: nobody else can connect to a
    // socket with the wrong group in between.
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

/// Refuses a socket directory that others could write to: whoever can write it can swap the
/// socket for a symbolic link between the agent's steps, or put their own in its place.
fn check_directory(path: &Path) -> Result<(), ServerError> {
    let dir = match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let unsafe_dir = |why: String| ServerError::UnsafeDirectory {
        dir: dir.to_path_buf(),
        why,
    };
    let meta = fs::symlink_metadata(dir).map_err(|source| ServerError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symbolic link".into()));
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_dir(format!("it belongs to uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {:o} lets others write to it",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
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

/// The group with lchown, then the configured mode with fchmodat2 and AT_SYMLINK_NOFOLLOW
/// (Linux 6.6): neither follows a link. The directory is one only root can write, so the
/// name cannot change in between; not following is the second lock.
fn restrict(options: &ServerOptions, gid: Option<u32>) -> Result<(), ServerError> {
    let path = &options.path;
    if let (Some(gid), Some(group)) = (gid, &options.group) {
        std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|source| {
            ServerError::SetGroup {
                path: path.clone(),
                group: group.clone(),
                source,
            }
        })?;
    }
    chmod_nofollow(path, options.mode).map_err(|source| ServerError::SetMode {
        path: path.clone(),
        mode: options.mode,
        source,
    })
}

/// chmod that refuses to follow a symbolic link.
fn chmod_nofollow(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "a path has no NUL byte"))?;
    // SAFETY: the path is a valid NUL-terminated string for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ENOSYS) {
        // fchmodat2 came with Linux 6.6. Before it, a plain chmod: the directory was checked
        // to be writable by root alone, so nobody can have swapped the socket for a link.
        use std::os::unix::fs::PermissionsExt;
        return std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    Err(error)
}
