//! Writing a `get`'s output: chunks read back from the cache (and checked again) into a
//! temporary file beside the output, the whole checked against the manifest, flushed to disk,
//! then renamed over the output. A reader of the output sees nothing, the old file, or the
//! new one whole: never a part, and never bytes that failed a check.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use super::{digest::Hasher, error::TransferError, ChunkCache, ChunkRef, Manifest};

/// What a temporary output file is called: hidden, next to the output, with the pid so that
/// one left by a killed get can be told from one in use.
fn temp_name(out_name: &str, pid: u32, n: u64) -> String {
    format!(".{out_name}.netwatch-{pid}-{n}.part")
}

/// Refuses an output path that cannot work, before anything is fetched.
pub(super) fn check_output(out: &Path) -> Result<(), TransferError> {
    let bad = |problem| TransferError::BadOutput {
        path: out.to_path_buf(),
        problem,
    };
    if out.file_name().is_none() {
        return Err(bad("not a file name"));
    }
    if out.is_dir() {
        return Err(bad("is a directory: give the path of the file to write"));
    }
    if !directory_of(out).is_dir() {
        return Err(bad("its directory does not exist"));
    }
    Ok(())
}

fn directory_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes the temporary file unless the output was renamed into place.
struct Temp {
    path: PathBuf,
    armed: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(super) fn assemble(
    manifest: &Manifest,
    cache: &ChunkCache,
    out: &Path,
) -> Result<(), TransferError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = directory_of(out);
    let name = out
        .file_name()
        .expect("checked by check_output")
        .to_string_lossy()
        .into_owned();
    remove_stale_temps(&dir, &name);
    let temp = Temp {
        path: dir.join(temp_name(
            &name,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        )),
        armed: true,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(TransferError::output("creating", &temp.path))?;
    // Each byte is hashed once here: the whole artifact's SHA-256 vouches for every chunk.
    // Only when it fails are the chunks checked one by one, to drop the damaged one.
    let mut whole = Hasher::default();
    for chunk in &manifest.chunks {
        let Some(data) = cache.read_unchecked(chunk)? else {
            // Missing, or of the wrong size: `read` drops such a file.
            cache.read(chunk)?;
            return Err(evicted(chunk, cache));
        };
        whole.update(&data);
        file.write_all(&data)
            .map_err(TransferError::output("writing", &temp.path))?;
    }
    let got = whole.finish();
    if got != manifest.sha256 {
        damaged_chunk(manifest, cache)?;
        return Err(TransferError::WholeFile {
            key: manifest.key.to_string(),
            expected: manifest.sha256,
            got,
            out: out.to_path_buf(),
        });
    }
    file.sync_all()
        .map_err(TransferError::output("flushing", &temp.path))?;
    drop(file);
    fs::rename(&temp.path, out).map_err(TransferError::output("renaming into", out))?;
    let mut temp = temp;
    temp.armed = false;
    // The rename itself reaches the disk with the directory (fsync(2)).
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Checks every chunk of the cache the manifest names, dropping damaged ones: the first
/// missing or damaged is the error; `Ok` if all are whole (then the manifest itself is wrong).
fn damaged_chunk(manifest: &Manifest, cache: &ChunkCache) -> Result<(), TransferError> {
    for chunk in &manifest.chunks {
        if cache.read(chunk)?.is_none() {
            return Err(evicted(chunk, cache));
        }
    }
    Ok(())
}

fn evicted(chunk: &ChunkRef, cache: &ChunkCache) -> TransferError {
    TransferError::Evicted {
        id: chunk.id,
        cache: cache.root().to_path_buf(),
    }
}

/// Removes temporary files that killed gets of the same output left behind: those whose
/// process is gone.
fn remove_stale_temps(dir: &Path, out_name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{out_name}.netwatch-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".part"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-chunk artifact in `cache`, and its manifest.
    fn cached_artifact(cache: &ChunkCache) -> Manifest {
        let parts: [&[u8]; 2] = [b"first chunk", b"second chunk"];
        let mut whole = Hasher::default();
        let mut chunks = Vec::new();
        let mut offset = 0;
        for part in parts {
            let id = crate::transfer::Sha256::of(part);
            cache.write(id, part).unwrap();
            whole.update(part);
            chunks.push(ChunkRef {
                id,
                offset,
                size: part.len() as u32,
                encoding: crate::transfer::Encoding::None,
                stored_size: part.len() as u64,
            });
            offset += part.len() as u64;
        }
        Manifest {
            key: "a/b".parse().unwrap(),
            size: offset,
            sha256: whole.finish(),
            created_unix_ms: 0,
            chunks,
        }
    }

    #[test]
    fn a_whole_cache_assembles_and_a_damaged_chunk_is_found_dropped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path().join("cache"));
        let manifest = cached_artifact(&cache);
        let out = dir.path().join("out.bin");
        assemble(&manifest, &cache, &out).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"first chunksecond chunk");

        // Same size, other bytes: only the whole artifact's hash can tell, then each chunk's.
        let damaged = &manifest.chunks[1];
        let hex = damaged.id.to_hex();
        let file = cache.root().join("chunks").join(&hex[..2]).join(&hex);
        fs::write(&file, b"SECOND CHUNK").unwrap();
        let again = dir.path().join("again.bin");
        let error = assemble(&manifest, &cache, &again).unwrap_err();
        assert!(
            matches!(&error, TransferError::Evicted { id, .. } if *id == damaged.id),
            "{error}"
        );
        assert!(!file.exists(), "the damaged chunk stays in the cache");
        assert!(!again.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "a temporary file is left"
        );
    }

    #[test]
    fn a_dead_processs_temporary_file_is_removed_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        let dead = dir.path().join(temp_name("out.bin", 9_999_999, 0));
        let live = dir.path().join(temp_name("out.bin", std::process::id(), 7));
        let other = dir.path().join(".other.netwatch-9999999-0.part");
        for path in [&dead, &live, &other] {
            fs::write(path, b"partial").unwrap();
        }
        remove_stale_temps(dir.path(), "out.bin");
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn unusable_outputs_are_refused_before_any_fetch() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output(dir.path()).is_err());
        assert!(check_output(&dir.path().join("missing/out")).is_err());
        assert!(check_output(&dir.path().join("out")).is_ok());
    }
}
