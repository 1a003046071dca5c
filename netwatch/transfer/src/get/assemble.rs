//! Writing a `get`'s output: chunks read back from the cache into the destination
//! (`output.rs`: a temporary file beside the output, or standard output), the whole checked
//! against the manifest before the file is put in place. A reader of the output sees
//! nothing, the old file, or the new one whole: never a part, and never bytes that failed a
//! check. On standard output the bytes go as they are read, and the error comes after.

use std::io::Write;

use crate::{
    digest::Hasher, error::TransferError, output::Destination, ChunkCache, ChunkRef, Manifest,
};

/// Writes the artifact from the cache to `out`; see the module's comment.
pub(super) fn assemble(
    manifest: &Manifest,
    cache: &ChunkCache,
    out: &Destination,
) -> Result<(), TransferError> {
    let mut sink = out.open()?;
    let name = sink.name();
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
        sink.write_all(&data)
            .map_err(TransferError::output("writing", &name))?;
    }
    let got = whole.finish();
    if got != manifest.sha256 {
        damaged_chunk(manifest, cache)?;
        return Err(TransferError::WholeFile {
            key: manifest.key.to_string(),
            expected: manifest.sha256,
            got,
            out: name,
        });
    }
    sink.commit()
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A two-chunk artifact in `cache`, and its manifest.
    fn cached_artifact(cache: &ChunkCache) -> Manifest {
        let parts: [&[u8]; 2] = [b"first chunk", b"second chunk"];
        let mut whole = Hasher::default();
        let mut chunks = Vec::new();
        let mut offset = 0;
        for part in parts {
            let id = crate::Sha256::of(part);
            cache.write(id, part).unwrap();
            whole.update(part);
            chunks.push(ChunkRef {
                id,
                offset,
                size: part.len() as u32,
                encoding: crate::Encoding::None,
                stored_size: part.len() as u64,
                pack: None,
            });
            offset += part.len() as u64;
        }
        Manifest {
            key: "a/b".parse().unwrap(),
            size: offset,
            sha256: whole.finish(),
            created_unix_ms: 0,
            chunks,
            packs: Vec::new(),
        }
    }

    #[test]
    fn a_whole_cache_assembles_and_a_damaged_chunk_is_found_dropped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::new(dir.path().join("cache"));
        let manifest = cached_artifact(&cache);
        let out = dir.path().join("out.bin");
        assemble(&manifest, &cache, &Destination::check(&out).unwrap()).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"first chunksecond chunk");

        // Same size, other bytes: only the whole artifact's hash can tell, then each chunk's.
        let damaged = &manifest.chunks[1];
        let hex = damaged.id.to_hex();
        let file = cache.root().join("chunks").join(&hex[..2]).join(&hex);
        fs::write(&file, b"SECOND CHUNK").unwrap();
        let again = dir.path().join("again.bin");
        let error = assemble(&manifest, &cache, &Destination::check(&again).unwrap()).unwrap_err();
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
}
