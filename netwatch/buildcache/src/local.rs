//! The entries this host has, sealed, one file each under `<cache>/buildcache/objects/<aa>/`:
//! what a build reads first and what the write-back queue uploads from. A file appears by
//! rename, whole; one that does not open (a crash mid-write on a filesystem that reordered it)
//! is removed and counts as a miss. A hit touches its file, which is what eviction orders by.
//! Files are opened without following symlinks and created exclusively: the store may sit in
//! a directory another user can write to.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use bytes::Bytes;

use crate::entry::EntryKey;

/// The local store's directory.
#[derive(Debug)]
pub struct LocalStore {
    objects: PathBuf,
    /// Names temporary files apart within this process.
    next_temp: AtomicU64,
    /// The bytes the entries take: counted at open, kept up by writes and eviction (a
    /// replaced entry counts twice until the next eviction counts again).
    bytes: AtomicU64,
}

impl LocalStore {
    /// The store under `root` (`<cache>/buildcache`), created if missing.
    pub fn open(root: &Path) -> io::Result<Self> {
        let objects = root.join("objects");
        std::fs::create_dir_all(&objects)?;
        let bytes = crate::evict::size(&objects)?;
        Ok(Self {
            objects,
            next_temp: AtomicU64::new(0),
            bytes: AtomicU64::new(bytes),
        })
    }

    /// The bytes the entries take (see `bytes`).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Evicts the least recently used down to `target` bytes, sparing entries queued under
    /// `queue`.
    pub fn evict_to(&self, queue: &Path, target: u64) -> io::Result<crate::evict::Evicted> {
        let evicted = crate::evict::evict_to(&self.objects, queue, target)?;
        self.bytes.store(evicted.left, Ordering::Relaxed);
        Ok(evicted)
    }

    fn file(&self, key: &EntryKey) -> PathBuf {
        let hex = key.id().to_hex();
        self.objects.join(&hex[..2]).join(hex)
    }

    /// The entry's content, checked (once: the caller serves it as it is); `None` if absent
    /// or damaged (a damaged one is removed).
    pub fn read(&self, key: &EntryKey) -> io::Result<Option<Bytes>> {
        let file = self.file(key);
        let sealed = match read_plain(&file) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        match key.open(&sealed) {
            Ok(content) => {
                // Recently used: the last to be evicted.
                if let Ok(handle) = no_follow().write(true).open(&file) {
                    let _ = handle.set_modified(SystemTime::now());
                }
                Ok(Some(content))
            }
            Err(why) => {
                tracing::warn!(file = %file.display(), %why, "removing a damaged local build cache entry");
                let _ = std::fs::remove_file(&file);
                Ok(None)
            }
        }
    }

    /// Whether the entry is here, without reading it.
    pub fn has(&self, key: &EntryKey) -> bool {
        self.file(key).is_file()
    }

    /// Stores a sealed entry: written aside, then renamed over any older one.
    pub fn write(&self, key: &EntryKey, sealed: &[u8]) -> io::Result<()> {
        let file = self.file(key);
        let directory = file.parent().expect("an object file has a directory");
        std::fs::create_dir_all(directory)?;
        let temp = directory.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = no_follow()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut out| out.write_all(sealed))
            .and_then(|()| std::fs::rename(&temp, &file));
        match &written {
            Ok(()) => {
                self.bytes.fetch_add(sealed.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                let _ = std::fs::remove_file(&temp);
            }
        }
        written
    }

    /// Removes the entry, if present.
    pub fn remove(&self, key: &EntryKey) -> io::Result<bool> {
        match std::fs::remove_file(self.file(key)) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The sealed entry stored under `id`, unchecked: for the write-back queue, which knows
    /// only the id (the mirror's reader checks it).
    pub fn read_by_id(&self, hex: &str) -> io::Result<Option<Bytes>> {
        if hex.len() < 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match read_plain(&self.objects.join(&hex[..2]).join(hex)) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Options that refuse a symlink in the last component.
fn no_follow() -> OpenOptions {
    let mut options = File::options();
    options.custom_flags(libc::O_NOFOLLOW);
    options
}

/// A regular file's bytes: not through a symlink, and never blocking on a FIFO or device
/// someone planted (opened without blocking, then refused unless regular).
fn read_plain(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = no_follow()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damaged_ones_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let key = EntryKey::from_path("/ccache/ab/cd").unwrap();
        assert_eq!(store.read(&key).unwrap(), None);
        let sealed = key.seal(b"content").unwrap();
        store.write(&key, &sealed).unwrap();
        assert!(store.has(&key));
        assert_eq!(
            store.read(&key).unwrap(),
            Some(Bytes::from_static(b"content"))
        );
        assert_eq!(
            store.read_by_id(&key.id().to_hex()).unwrap(),
            Some(sealed.clone())
        );

        // A torn file: a miss, and gone.
        store.write(&key, &sealed[..sealed.len() - 3]).unwrap();
        assert_eq!(store.read(&key).unwrap(), None);
        assert!(!store.has(&key));
        assert!(!store.remove(&key).unwrap());
        assert_eq!(store.read_by_id("../etc").unwrap(), None);

        // A symlink planted where an entry goes is neither followed nor served.
        let target = dir.path().join("secret");
        std::fs::write(&target, b"not an entry").unwrap();
        let hex = key.id().to_hex();
        let planted = dir.path().join("objects").join(&hex[..2]).join(&hex);
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(store.read(&key).is_err());
        assert!(store.read_by_id(&hex).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"not an entry");

        // Nor is a FIFO read (it would block a thread for ever).
        std::fs::remove_file(&planted).unwrap();
        let fifo = std::ffi::CString::new(planted.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(store.read(&key).is_err());
        assert!(store.read_by_id(&hex).is_err());
    }
}
