//! Outputs as the cache's copy: a get's output file, hard-linked into the cache beside its
//! manifest, holds every chunk of that version already, so the chunks need not be written a
//! second time (writing each byte twice was half of a get's time). Linked while the output is
//! still being filled (a `partial`), it is what a get killed half-way leaves for its rerun;
//! once the output is whole it becomes the key's `current` seed, which the next get of the
//! key (the same version or the next) reads its unchanged chunks from.
//!
//! Nothing here is trusted: every chunk read from a seed is checked against its id, so an
//! output the user changed since, or a partial's holes, only cost a fetch.
//!
//! ```text
//! <root>/seeds/<sha256 of the key, 32 hex>/current(.json)
//! <root>/seeds/<sha256 of the key, 32 hex>/partial-<pid>-<n>(.json)
//! ```

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use super::ChunkCache;
use crate::{digest::Digest, ArtifactKey, Manifest};

const CURRENT: &str = "current";
const PARTIAL: &str = "partial-";

/// A seed's data file and the manifest that says where its chunks lie.
pub struct Seed {
    pub data: PathBuf,
    pub manifest: Manifest,
}

/// An output linked into the cache while it is filled; [`SeedLink::complete`] makes it the
/// key's current seed once the output is whole.
pub struct SeedLink {
    dir: PathBuf,
    name: String,
}

impl ChunkCache {
    fn seed_dir(&self, key: &ArtifactKey) -> PathBuf {
        let hex = Digest::sha256(key.as_str().as_bytes()).to_hex();
        self.root().join("seeds").join(&hex[..32])
    }

    /// Links `output` (the get's open temporary file) into the cache with `manifest`.
    /// `None` where it cannot be linked (the cache on another file system, say): the get
    /// then keeps what it fetches in the cache the usual way.
    pub fn link_seed(
        &self,
        key: &ArtifactKey,
        manifest: &Manifest,
        output: &File,
    ) -> Option<SeedLink> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.seed_dir(key);
        let name = format!(
            "{PARTIAL}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let linked = (|| {
            use std::os::unix::fs::DirBuilderExt as _;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            fs::write(dir.join(format!("{name}.json")), manifest.to_json())?;
            link_open_file(output, &dir.join(&name))
        })();
        match linked {
            Ok(()) => Some(SeedLink { dir, name }),
            Err(error) => {
                tracing::debug!(%error, cache = %self.root().display(), "the output cannot be linked into the cache: keeping fetched ranges instead");
                let _ = fs::remove_file(dir.join(format!("{name}.json")));
                None
            }
        }
    }

    /// The seeds kept for `key`: the current one first, then partials left by gets that
    /// did not finish (or are running). Ones without a readable manifest are left out.
    pub fn seeds(&self, key: &ArtifactKey) -> Vec<Seed> {
        let dir = self.seed_dir(key);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut seeds: Vec<Seed> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.to_owned();
                if !(name == CURRENT || name.starts_with(PARTIAL)) || name.ends_with(".json") {
                    return None;
                }
                // One being made, or whose manifest is gone: skipped, never removed here
                // (another get may be making it; `complete` tidies what dead gets left).
                let json = fs::read(dir.join(format!("{name}.json"))).ok()?;
                let manifest = Manifest::from_json(&json, key).ok()?;
                Some(Seed {
                    data: entry.path(),
                    manifest,
                })
            })
            .collect();
        seeds.sort_by_key(|seed| !seed.data.ends_with(CURRENT));
        seeds
    }

    /// Chunk ids some seed of `key` has written (unchecked: a get checks what it reads).
    /// An output is filled in any order from a sparse file: a chunk not written yet lies in
    /// a hole, which the file system reports (SEEK_DATA).
    pub(super) fn seeded(&self, key: &ArtifactKey) -> std::collections::HashSet<Digest> {
        let mut seeded = std::collections::HashSet::new();
        for seed in self.seeds(key) {
            let Ok(file) = File::open(&seed.data) else {
                continue;
            };
            let written = written_ranges(&file);
            seeded.extend(seed.manifest.chunks.iter().filter_map(|c| {
                let end = c.offset + u64::from(c.size);
                written
                    .iter()
                    .any(|range| range.start <= c.offset && end <= range.end)
                    .then_some(c.id)
            }));
        }
        seeded
    }
}

impl SeedLink {
    /// Makes this output the key's current seed (the output is whole and in place), and
    /// removes the partials of gets that are gone.
    pub fn complete(self) {
        let (data, json) = (
            self.dir.join(&self.name),
            self.dir.join(format!("{}.json", self.name)),
        );
        // The manifest first: a current whose manifest is the old one's would fail its checks.
        let _ = fs::rename(&json, self.dir.join(format!("{CURRENT}.json")));
        let _ = fs::rename(&data, self.dir.join(CURRENT));
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PARTIAL))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            if !process_alive(pid) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Hard-links the file behind `file` at `to`: through /proc/self/fd, so the link is the
/// inode this process opened, whatever its path has become meanwhile.
fn link_open_file(file: &File, to: &Path) -> io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
    let to = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the cache's path"))?;
    // SAFETY: both are valid NUL-terminated paths; linkat reads them only.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The ranges of `file` that hold data rather than holes.
fn written_ranges(file: &File) -> Vec<std::ops::Range<u64>> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut at: libc::off_t = 0;
    loop {
        // SAFETY: lseek on a descriptor this function borrows; no memory is passed.
        let start = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if start < 0 {
            break; // ENXIO: no data past `at`.
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        if end <= start {
            break;
        }
        ranges.push(start as u64..end as u64);
        at = end;
    }
    ranges
}

fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 checks the process exists and sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
