//! The local chunk cache: the ranges of packs a get read, as the mirror stored them; decoded
//! format 1 chunks by id; and the last manifest seen for each key. A range is written whole
//! when it arrives (temporary file, then rename: one file per range, not per chunk), so an
//! interrupted `get`, even a killed one, leaves only whole ranges behind, and a rerun fetches
//! the rest. Every chunk is checked when it is read from here: a damaged file is dropped and
//! fetched anew.
//!
//! ```text
//! <root>/packs/<aa>/<pack>/<start>-<end>    bytes start..end of a pack
//! <root>/chunks/<aa>/<id>                   a format 1 chunk, decoded
//! <root>/manifests/<key>.json
//! <root>/seeds/...                          outputs, linked (`seed.rs`)
//! ```

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

mod evict;
mod seed;

use std::ops::Range;

pub use evict::{Evicted, Usage};
pub use seed::Seed;

use super::{digest::Digest, key::ArtifactKey, manifest::ChunkRef, pack::PackId};

/// A cache directory.
#[derive(Clone, Debug)]
pub struct ChunkCache {
    root: PathBuf,
}

/// The cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the chunk cache at {}: {action} {}: {source}", root.display(), path.display())]
pub struct CacheError {
    pub root: PathBuf,
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl ChunkCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chunk_file(&self, id: Digest) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    fn manifest_file(&self, key: &ArtifactKey) -> PathBuf {
        self.root.join("manifests").join(format!("{key}.json"))
    }

    fn error(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
        let (root, path) = (self.root.clone(), path.to_path_buf());
        move |source| CacheError {
            root,
            action,
            path,
            source,
        }
    }

    fn run_dir(&self, pack: PackId) -> PathBuf {
        let hex = pack.to_string();
        self.root.join("packs").join(&hex[..2]).join(hex)
    }

    /// Keeps bytes `start..` of `pack` as the mirror sent them (checked by the caller).
    pub fn write_run(&self, pack: PackId, start: u64, stored: &[u8]) -> Result<(), CacheError> {
        let end = start + stored.len() as u64;
        self.write_atomic(&self.run_dir(pack).join(format!("{start}-{end}")), stored)
    }

    /// The ranges of `pack` the cache holds, with their files.
    pub fn runs(&self, pack: PackId) -> Vec<(Range<u64>, PathBuf)> {
        let Ok(files) = fs::read_dir(self.run_dir(pack)) else {
            return Vec::new();
        };
        files
            .flatten()
            .filter_map(|file| {
                let name = file.file_name();
                let (start, end) = name.to_str()?.split_once('-')?;
                let range = start.parse().ok()?..end.parse().ok()?;
                (range.start < range.end).then(|| (range, file.path()))
            })
            .collect()
    }

    /// How many of `manifest`'s chunks the cache holds (unchecked: a get checks them).
    pub fn held(&self, manifest: &super::Manifest) -> usize {
        let mut runs = std::collections::HashMap::new();
        let seeded = self.seeded(&manifest.key);
        manifest
            .chunks
            .iter()
            .filter(|chunk| match manifest.spot(chunk) {
                _ if seeded.contains(&chunk.id) => true,
                None => self.contains(chunk.id),
                Some(_) if self.contains(chunk.id) => true,
                Some(spot) => runs
                    .entry(spot.pack)
                    .or_insert_with(|| self.runs(spot.pack))
                    .iter()
                    .any(|(range, _)| {
                        range.start <= spot.offset && spot.offset + chunk.stored_size <= range.end
                    }),
            })
            .count()
    }

    /// Removes a range file found damaged; its chunks are then fetched again.
    pub fn drop_run(&self, file: &Path) {
        tracing::warn!(path = %file.display(), "dropping a damaged range from the cache");
        let _ = fs::remove_file(file);
    }

    /// Whether the cache keeps any chunk as a file of its own: where it has none, a get looks
    /// for none (one lookup, not one failed open per chunk).
    pub fn has_chunk_files(&self) -> bool {
        self.root.join("chunks").is_dir()
    }

    /// Whether a file for the chunk is there (unchecked: `read` checks).
    pub fn contains(&self, id: Digest) -> bool {
        self.chunk_file(id).is_file()
    }

    /// The chunk's content if the cache has it whole; a file whose content is not what the id
    /// names is removed and counts as absent.
    pub fn read(&self, chunk: &ChunkRef) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.chunk_file(chunk.id);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error("reading", &path)(e)),
        };
        if data.len() == chunk.size as usize && chunk.id.verifies(&data) {
            return Ok(Some(data));
        }
        tracing::warn!(path = %path.display(), "dropping a damaged chunk from the cache");
        match fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("removing", &path)(e)),
        }
    }

    /// Stores a chunk whose content the caller has checked against `id`.
    pub fn write(&self, id: Digest, data: &[u8]) -> Result<(), CacheError> {
        debug_assert!(id.verifies(data));
        self.write_atomic(&self.chunk_file(id), data)
    }

    /// The manifest last fetched for `key`, unchecked, if any.
    pub fn read_manifest(&self, key: &ArtifactKey) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.manifest_file(key);
        match fs::read(&path) {
            Ok(json) => Ok(Some(json)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("reading", &path)(e)),
        }
    }

    pub fn write_manifest(&self, key: &ArtifactKey, json: &[u8]) -> Result<(), CacheError> {
        self.write_atomic(&self.manifest_file(key), json)
    }

    /// Writes `data` to a temporary file beside `path` and renames it into place. No fsync:
    /// a crash can at worst leave a damaged file, which `read` detects and drops. The cache
    /// is its user's alone: directories 0700, files 0600 (what was fetched may be private).
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), CacheError> {
        // Eviction (by another get) removes a directory it emptied: one that vanishes
        // between creating it and writing into it is made again.
        let mut tries = 0;
        loop {
            match self.write_atomic_once(path, data) {
                Err(e) if e.source.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    fn write_atomic_once(&self, path: &Path, data: &[u8]) -> Result<(), CacheError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().expect("cache paths have a parent");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(self.error("creating", dir))?;
        let name = path
            .file_name()
            .expect("cache paths have a name")
            .to_string_lossy();
        let temp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| io::Write::write_all(&mut file, data))
            .map_err(self.error("writing", &temp))
            .and_then(|()| fs::rename(&temp, path).map_err(self.error("renaming into", path)));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Encoding;

    fn chunk(data: &[u8]) -> ChunkRef {
        ChunkRef {
            id: Digest::sha256(data),
            offset: 0,
            size: data.len() as u32,
            encoding: Encoding::None,
            stored_size: data.len() as u64,
            pack: None,
        }
    }

    #[test]
    fn a_chunk_written_is_read_back_and_a_damaged_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path());
        let data = b"chunk content".repeat(100);
        let chunk = chunk(&data);
        assert!(!cache.contains(chunk.id));
        assert_eq!(cache.read(&chunk).unwrap(), None);
        cache.write(chunk.id, &data).unwrap();
        assert!(cache.contains(chunk.id));
        assert_eq!(cache.read(&chunk).unwrap(), Some(data.clone()));
        let file = cache.chunk_file(chunk.id);
        assert!(file.starts_with(dir.path().join("chunks")));
        fs::write(&file, b"bit rot").unwrap();
        assert_eq!(cache.read(&chunk).unwrap(), None);
        assert!(!file.exists(), "the damaged file stays");
        // No temporary files are left behind.
        let leftovers = fs::read_dir(file.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn manifests_are_kept_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path());
        let key: ArtifactKey = "a/b.tar".parse().unwrap();
        assert_eq!(cache.read_manifest(&key).unwrap(), None);
        cache.write_manifest(&key, b"{}").unwrap();
        assert_eq!(cache.read_manifest(&key).unwrap(), Some(b"{}".to_vec()));
        assert!(dir.path().join("manifests/a/b.tar.json").is_file());
    }
}
