//! Keeping the cache under its cap: the least recently used files go first (a range of a
//! pack, or a format 1 chunk; a get that uses one marks it used). A get needs a cached file
//! only for the moment it copies it into its output, and one that finds a file gone fetches
//! its chunks instead, so eviction never breaks a get running beside it.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::ChunkCache;

/// What the cache holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes of ranges and chunks (manifests and the scoreboard aside: they are small).
    pub bytes: u64,
    /// Range files of packs.
    pub ranges: usize,
    /// Format 1 chunk files.
    pub chunks: usize,
    /// Outputs linked in as seeds (whole or partial), counted whole though they share their
    /// blocks with the outputs while those exist.
    pub seeds: usize,
    /// Manifests kept (the last fetched of each key).
    pub manifests: usize,
}

/// What an eviction removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Evicted {
    pub files: usize,
    pub bytes: u64,
}

/// A file eviction may remove.
struct Entry {
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
}

impl ChunkCache {
    /// What the cache holds now.
    pub fn usage(&self) -> Usage {
        let entries = self.entries();
        Usage {
            bytes: entries.iter().map(|e| e.bytes).sum(),
            ranges: entries
                .iter()
                .filter(|e| e.path.starts_with(self.root().join("packs")))
                .count(),
            chunks: entries
                .iter()
                .filter(|e| e.path.starts_with(self.root().join("chunks")))
                .count(),
            seeds: entries
                .iter()
                .filter(|e| e.path.starts_with(self.root().join("seeds")))
                .count(),
            manifests: files(&self.root().join("manifests")).len(),
        }
    }

    /// Removes the least recently used files until at most `max_bytes` remain.
    pub fn evict_to(&self, max_bytes: u64) -> Evicted {
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        entries.sort_by_key(|e| e.used);
        let mut evicted = Evicted::default();
        for entry in entries {
            if total <= max_bytes {
                break;
            }
            if fs::remove_file(&entry.path).is_ok() {
                total -= entry.bytes;
                evicted.files += 1;
                evicted.bytes += entry.bytes;
                // Its directory, if that was the last file: best effort.
                if let Some(dir) = entry.path.parent() {
                    let _ = fs::remove_dir(dir);
                }
            }
        }
        if evicted.files > 0 {
            tracing::info!(cache = %self.root().display(), files = evicted.files, bytes = evicted.bytes, "evicted the least recently used from the cache");
        }
        evicted
    }

    /// Marks a cached file used now, so that eviction keeps it longer.
    pub(crate) fn touch(&self, file: &Path) {
        if let Ok(handle) = fs::File::options().write(true).open(file) {
            let _ = handle.set_modified(SystemTime::now());
        }
    }

    /// Every range, chunk and seed data file, with its size and last use (temporary files
    /// and seeds' manifests aside: a seed without its data is dropped when next read).
    fn entries(&self) -> Vec<Entry> {
        ["packs", "chunks", "seeds"]
            .iter()
            .flat_map(|top| files(&self.root().join(top)))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && !n.ends_with(".json"))
            })
            .filter_map(|path| {
                let meta = fs::symlink_metadata(&path).ok()?;
                meta.is_file().then(|| Entry {
                    bytes: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                })
            })
            .collect()
    }
}

/// Every file under `dir`, recursively (symlinks are not followed).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => found.extend(files(&entry.path())),
            Ok(_) => found.push(entry.path()),
            Err(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::PackId;

    #[test]
    fn the_least_recently_used_go_first_until_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path());
        let (old, new) = (PackId::new(), PackId::new());
        cache.write_run(old, 0, &[1; 1000]).unwrap();
        cache.write_run(new, 0, &[2; 1000]).unwrap();
        let old_path = cache.runs(old)[0].1.clone();
        fs::File::options()
            .write(true)
            .open(&old_path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            cache.usage(),
            Usage {
                bytes: 2000,
                ranges: 2,
                chunks: 0,
                seeds: 0,
                manifests: 0
            }
        );
        assert_eq!(
            cache.evict_to(1500),
            Evicted {
                files: 1,
                bytes: 1000
            }
        );
        assert!(cache.runs(old).is_empty(), "the older range stays");
        assert_eq!(cache.runs(new).len(), 1);
        assert_eq!(cache.evict_to(1500), Evicted::default());
    }
}
