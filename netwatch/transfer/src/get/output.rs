//! Where a `get` writes: a regular file, or standard output (`-`).
//!
//! A file is written to a temporary file beside it, checked, flushed, and renamed over it:
//! a reader sees nothing, the old file, or the new one whole. An existing file must be a
//! regular one (or a symlink to one, which is then written through and kept): `get KEY
//! /dev/null` must never replace a device with a file. A file replaced keeps its owner and
//! mode where this user may set them. The temporary file is locked while in use, so the next
//! get of the same output removes one that a killed get left, whatever its process id.
//! For standard output the chunks go to an unnamed temporary file in the cache directory
//! first (they arrive in any order), which is copied out once every chunk is in and checked:
//! no byte that failed a check ever reaches standard output.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::error::TransferError;

/// A temporary file left this long ago, and not locked, was left by a get that died.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Where the output goes, as checked before anything is fetched.
#[derive(Debug)]
pub enum Destination {
    /// A regular file at `path` (a symlink resolved to its target), replacing `existing`.
    File {
        /// As the user gave it, for messages.
        given: PathBuf,
        path: PathBuf,
        existing: Option<Owner>,
    },
    Stdout,
}

/// What a replaced file keeps: its owner and permission bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Destination {
    /// Checks `out` ("-" for standard output): refuses what is not, or would not be, a
    /// regular file, with what it is and what to do.
    pub fn check(out: &Path) -> Result<Self, TransferError> {
        if out.as_os_str() == "-" {
            return Ok(Self::Stdout);
        }
        let bad = |problem: String| TransferError::BadOutput {
            path: out.to_path_buf(),
            problem,
        };
        let path = match fs::symlink_metadata(out) {
            // Followed only if the caller made it: a link someone else planted (`/tmp/out ->
            // /etc/shadow`) would have a root get replace its target, and resolving the path
            // here bypasses the kernel's protected_symlinks.
            // SAFETY: geteuid has no preconditions.
            Ok(meta)
                if meta.file_type().is_symlink() && meta.uid() != unsafe { libc::geteuid() } =>
            {
                return Err(bad(format!(
                    "is a symbolic link owned by uid {}, not by you: netwatch get follows only \
                     your own links; give the target's path",
                    meta.uid()
                )))
            }
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(out).map_err(|e| {
                bad(format!(
                    "is a symbolic link that leads nowhere usable ({e}): give a file path"
                ))
            })?,
            _ => out.to_path_buf(),
        };
        if path.file_name().is_none() {
            return Err(bad(
                "is not a file name: give the path of the file to write".into(),
            ));
        }
        let existing = match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Some(Owner {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode(),
            }),
            Ok(meta) => {
                return Err(bad(format!(
                    "is {}, not a regular file: netwatch get writes a file (give a file's \
                     path), or standard output (give -)",
                    kind_of(&meta)
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(bad(format!("cannot be examined: {e}"))),
        };
        if !directory_of(&path).is_dir() {
            return Err(bad("is in a directory that does not exist".into()));
        }
        Ok(Self::File {
            given: out.to_path_buf(),
            path,
            existing,
        })
    }

    /// The output as the user named it, for messages.
    pub fn given(&self) -> PathBuf {
        match self {
            Self::File { given, .. } => given.clone(),
            Self::Stdout => PathBuf::from("-"),
        }
    }

    /// Refuses an artifact of `size` bytes that does not fit: beyond `cap`, or beyond the
    /// free space of the output's file system. Says both figures.
    pub fn check_room(&self, size: u64, cap: Option<u64>) -> Result<(), TransferError> {
        if let Some(cap) = cap.filter(|cap| size > *cap) {
            return Err(TransferError::TooLarge {
                path: self.given(),
                size,
                limit: cap,
                why: "the largest output allowed (--max-size)",
            });
        }
        let Self::File { given, path, .. } = self else {
            return Ok(());
        };
        let dir = directory_of(path);
        if let Some(free) = free_space(&dir).filter(|free| size > *free) {
            return Err(TransferError::TooLarge {
                path: given.clone(),
                size,
                limit: free,
                why: "the free space there",
            });
        }
        Ok(())
    }

    /// Opens where the bytes go. For a file, first removes temporary files that killed gets
    /// of the same output left. Standard output's spool is an unnamed file in `spool_dir`.
    pub fn open(&self, spool_dir: &Path) -> Result<Sink, TransferError> {
        let Self::File {
            given,
            path,
            existing,
        } = self
        else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(spool_dir)
                .map_err(TransferError::output("creating", spool_dir))?;
            let spool = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o600)
                .open(spool_dir)
                .map_err(TransferError::output(
                    "creating a temporary file in",
                    spool_dir,
                ))?;
            return Ok(Sink::Stdout(spool));
        };
        let dir = directory_of(path);
        let name = path
            .file_name()
            .expect("checked: a file name")
            .to_string_lossy()
            .into_owned();
        remove_stale_temps(&dir, &name);
        let temp = dir.join(format!(".{name}.netwatch-{:016x}.part", fastrand::u64(..)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(TransferError::output("creating", &temp))?;
        // Held until the file is renamed or removed: how the next get tells it is in use.
        // SAFETY: a valid open descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        Ok(Sink::File(Box::new(TempFile {
            file,
            temp,
            path: path.clone(),
            given: given.clone(),
            existing: *existing,
            done: false,
        })))
    }
}

/// What the bytes are written to: the temporary file beside the output, or standard
/// output's spool.
pub enum Sink {
    File(Box<TempFile>),
    Stdout(File),
}

impl Sink {
    /// The output file being filled, where it will be the output itself (not a spool for
    /// standard output): what the cache can link as a seed.
    pub fn output_file(&self) -> Option<&File> {
        match self {
            Self::File(temp) => Some(&temp.file),
            Self::Stdout(_) => None,
        }
    }

    /// What write errors are reported against.
    pub fn name(&self) -> PathBuf {
        match self {
            Self::File(temp) => temp.temp.clone(),
            Self::Stdout(_) => PathBuf::from("standard output's temporary file"),
        }
    }

    /// The file chunks are written into, at their offsets.
    pub fn file(&self) -> Result<File, TransferError> {
        match self {
            Self::File(temp) => temp.file.try_clone(),
            Self::Stdout(spool) => spool.try_clone(),
        }
        .map_err(TransferError::output("opening", self.name()))
    }

    /// Every chunk is in and checked: puts the file in place (flushed, with the owner and
    /// mode of the file it replaces), or copies the spool to standard output.
    pub fn commit(self) -> Result<(), TransferError> {
        match self {
            Self::File(temp) => temp.commit(),
            Self::Stdout(mut spool) => {
                use std::io::Seek as _;
                spool.rewind().map_err(TransferError::output(
                    "reading",
                    "standard output's temporary file",
                ))?;
                let mut out = io::stdout().lock();
                io::copy(&mut spool, &mut out)
                    .and_then(|_| out.flush())
                    .map_err(TransferError::output("writing", "standard output"))
            }
        }
    }
}

/// A temporary file beside the output; removed unless committed.
pub struct TempFile {
    file: File,
    temp: PathBuf,
    path: PathBuf,
    given: PathBuf,
    existing: Option<Owner>,
    done: bool,
}

impl TempFile {
    fn commit(mut self) -> Result<(), TransferError> {
        let mode = match self.existing {
            Some(owner) => {
                // The owner where this user may give it (root may; others only their own).
                // SAFETY: a valid open descriptor.
                unsafe { libc::fchown(self.file.as_raw_fd(), owner.uid, owner.gid) };
                // Permission bits only: never set-user-id on fetched bytes.
                owner.mode & 0o777
            }
            None => 0o666 & !umask(),
        };
        self.file
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(TransferError::output("setting the mode of", &self.temp))?;
        self.file
            .sync_all()
            .map_err(TransferError::output("flushing", &self.temp))?;
        fs::rename(&self.temp, &self.path)
            .map_err(TransferError::output("renaming into", &self.given))?;
        self.done = true;
        // The rename itself reaches the disk with the directory (fsync(2)).
        if let Ok(dir) = File::open(directory_of(&self.path)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn directory_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zero is a valid value to be overwritten.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statvfs(c_dir.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn umask() -> u32 {
    // SAFETY: umask cannot fail; read by setting and restoring it.
    unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask
    }
}

/// Removes temporary files of `out_name` that gets which died left: those no process holds
/// locked, and older than a moment (a get that just created one takes its lock at once).
pub fn remove_stale_temps(dir: &Path, out_name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{out_name}.netwatch-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let ours = file_name
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".part"));
        if !ours {
            continue;
        }
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| SystemTime::now().duration_since(at).unwrap_or_default() > STALE_AFTER);
        // Only regular files: a FIFO planted under the name would block the open for ever.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: a valid open descriptor.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if old && free {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn problem(out: &Path) -> String {
        match Destination::check(out) {
            Err(TransferError::BadOutput { problem, .. }) => problem,
            other => panic!("{} was not refused: {other:?}", out.display()),
        }
    }

    #[test]
    fn a_link_someone_else_made_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("victim"), dir.path().join("out"));
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, &link).unwrap();
        assert!(
            Destination::check(&link).is_ok(),
            "one's own link is followed"
        );
        let c_link = std::ffi::CString::new(link.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string; only the link's owner changes (as root; as another
        // user the call fails and the test has nothing to show).
        if unsafe { libc::lchown(c_link.as_ptr(), 65534, 65534) } == 0 {
            assert!(problem(&link).contains("owned by uid 65534"));
        }
    }

    #[test]
    fn the_size_cap_holds_for_standard_output_too() {
        let error = Destination::check(Path::new("-"))
            .unwrap()
            .check_room(2000, Some(1000))
            .unwrap_err();
        assert!(matches!(error, TransferError::TooLarge { .. }), "{error:?}");
    }

    #[test]
    fn a_device_a_fifo_or_a_directory_is_refused_saying_what_it_is() {
        assert!(problem(Path::new("/dev/null")).contains("a character device"));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        assert!(problem(&fifo).contains("a FIFO"));
        assert!(problem(dir.path()).contains("a directory"));
        assert!(problem(&dir.path().join("missing/out")).contains("does not exist"));
        let link = dir.path().join("to-null");
        symlink("/dev/null", &link).unwrap();
        assert!(problem(&link).contains("a character device"));
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_symlink_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.bin");
        fs::write(&target, b"old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.bin");
        symlink(&target, &link).unwrap();
        let destination = Destination::check(&link).unwrap();
        let sink = destination.open(&dir.path().join("spool")).unwrap();
        sink.file().unwrap().write_all(b"new").unwrap();
        sink.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "a temporary file is left"
        );
    }

    #[test]
    fn a_dead_gets_temporary_file_is_removed_and_one_in_use_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        // One a killed get left: unlocked and old.
        let dead = dir.path().join(".out.bin.netwatch-12345-0.part");
        let file = File::create(&dead).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        drop(file);
        // One in use: open and locked by this sink.
        let destination = Destination::check(&out).unwrap();
        let sink = destination.open(&dir.path().join("spool")).unwrap();
        let in_use = sink.name();
        File::options()
            .write(true)
            .open(&in_use)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        remove_stale_temps(dir.path(), "out.bin");
        assert!(!dead.exists(), "the dead get's file stays");
        assert!(in_use.exists(), "the live get's file was removed");
        drop(sink);
        assert!(!in_use.exists(), "an uncommitted sink leaves its file");
    }

    #[test]
    fn an_artifact_larger_than_the_cap_or_the_free_space_is_refused_with_both_figures() {
        let dir = tempfile::tempdir().unwrap();
        let destination = Destination::check(&dir.path().join("out")).unwrap();
        let error = destination.check_room(2_000, Some(1_000)).unwrap_err();
        assert!(error.to_string().contains("2000 bytes"), "{error}");
        assert!(error.to_string().contains("1000 bytes"), "{error}");
        let error = destination.check_room(u64::MAX / 2, None).unwrap_err();
        assert!(
            error.to_string().contains("the free space there"),
            "{error}"
        );
        assert!(destination.check_room(10, None).is_ok());
    }
}
