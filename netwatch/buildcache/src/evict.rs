//! Keeping the local store under its cap: the least recently used entries go first (a hit
//! touches its entry), never one still queued for a mirror (write-back reads it), and down to
//! nine tenths of the cap so that eviction runs now and then, not after every store.

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// What one pass removed and what is left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub files: u64,
    pub bytes: u64,
    /// The store's size after the pass.
    pub left: u64,
}

/// The sealed entries' files under `objects`, with their sizes and last use.
fn entries(objects: &Path) -> io::Result<Vec<(SystemTime, u64, PathBuf)>> {
    let mut found = Vec::new();
    for directory in std::fs::read_dir(objects)? {
        let directory = directory?.path();
        if !directory.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&directory)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue; // a write under way
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                found.push((meta.modified()?, meta.len(), entry.path()));
            }
        }
    }
    Ok(found)
}

/// What a build cache store holds, for `netwatch cache`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    pub entries: u64,
    pub bytes: u64,
    /// Uploads waiting in the write-back queues (an entry counts once per mirror).
    pub queued: u64,
}

/// What the store under `root` (`<cache>/buildcache`) holds; `None` if there is none.
pub fn usage(root: &Path) -> io::Result<Option<StoreUsage>> {
    let objects = root.join("objects");
    if !objects.is_dir() {
        return Ok(None);
    }
    let all = entries(&objects)?;
    let mut queued = 0;
    if let Ok(lanes) = std::fs::read_dir(root.join("queue")) {
        for lane in lanes {
            let lane = lane?.path();
            if lane.is_dir() {
                queued += std::fs::read_dir(&lane)?.count() as u64;
            }
        }
    }
    Ok(Some(StoreUsage {
        entries: all.len() as u64,
        bytes: all.iter().map(|(_, len, _)| len).sum(),
        queued,
    }))
}

/// The bytes the entries under `objects` take.
pub fn size(objects: &Path) -> io::Result<u64> {
    Ok(entries(objects)?.iter().map(|(_, len, _)| len).sum())
}

/// The ids a write-back marker under `queue` still names.
fn queued(queue: &Path) -> io::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for lane in std::fs::read_dir(queue)? {
        let lane = lane?.path();
        if !lane.is_dir() {
            continue;
        }
        for marker in std::fs::read_dir(&lane)? {
            let name = marker?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.split('.').next() {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(ids)
}

/// Removes the least recently used entries under `objects` until they take at most
/// `target` bytes, sparing those queued under `queue`.
pub fn evict_to(objects: &Path, queue: &Path, target: u64) -> io::Result<Evicted> {
    let mut all = entries(objects)?;
    let spared = queued(queue)?;
    let mut left: u64 = all.iter().map(|(_, len, _)| len).sum();
    all.sort();
    let mut evicted = Evicted::default();
    for (_, len, path) in all {
        if left <= target {
            break;
        }
        let id = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if id.is_some_and(|id| spared.contains(&id)) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                left -= len;
                evicted.files += 1;
                evicted.bytes += len;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => left -= len,
            Err(error) => return Err(error),
        }
    }
    evicted.left = left;
    Ok(evicted)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_queued_entries_stay() {
        let root = tempfile::tempdir().unwrap();
        let (objects, queue) = (root.path().join("objects"), root.path().join("queue"));
        std::fs::create_dir_all(objects.join("aa")).unwrap();
        std::fs::create_dir_all(queue.join("mirror-1")).unwrap();
        let now = SystemTime::now();
        for (i, name) in ["aa01", "aa02", "aa03", "aa04"].iter().enumerate() {
            let path = objects.join("aa").join(name);
            std::fs::write(&path, [0u8; 100]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - Duration::from_secs(100 - i as u64))
                .unwrap();
        }
        // The oldest is still queued for a mirror.
        std::fs::write(queue.join("mirror-1").join("aa01.1-0"), b"").unwrap();
        assert_eq!(size(&objects).unwrap(), 400);
        let evicted = evict_to(&objects, &queue, 200).unwrap();
        assert_eq!((evicted.files, evicted.bytes, evicted.left), (2, 200, 200));
        assert!(
            objects.join("aa/aa01").exists(),
            "a queued entry was evicted"
        );
        assert!(!objects.join("aa/aa02").exists() && !objects.join("aa/aa03").exists());
        assert!(objects.join("aa/aa04").exists(), "the most recent stays");
        assert_eq!(
            usage(root.path()).unwrap(),
            Some(StoreUsage {
                entries: 2,
                bytes: 200,
                queued: 1
            })
        );
        assert_eq!(usage(&root.path().join("none")).unwrap(), None);
    }
}
