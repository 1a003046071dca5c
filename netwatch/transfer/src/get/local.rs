//! The chunks a get already has: read from the cache (an earlier output of the key, a range
//! of a pack, a chunk file), checked, and written into the output before anything is
//! fetched. What fails its check is fetched, and a damaged range dropped from the cache.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::unix::fs::FileExt as _,
};

use super::place::Placer;
use crate::{
    cache::Seed, compress::decode_in_place, digest::Digest, error::TransferError,
    manifest::Located, ChunkCache, Manifest, PackId,
};

/// Places every chunk of `manifest` the cache holds sound; returns the others (each once),
/// with where the manifest places them.
pub fn place_cached(
    manifest: &Manifest,
    cache: &ChunkCache,
    placer: &Placer,
    output: &std::path::Path,
) -> Result<Vec<Located>, TransferError> {
    let written = |e| TransferError::output("writing", output)(e);
    let mut seen = HashSet::new();
    let unique: Vec<Located> = manifest
        .chunks
        .iter()
        .filter(|c| seen.insert(c.id))
        .map(|c| (c.clone(), manifest.spot(c)))
        .collect();
    let mut missing = Vec::new();
    let mut seeds = Seeds::open(cache.seeds(&manifest.key));
    let chunk_files = cache.has_chunk_files();
    // Packed chunks by the cached range file that holds them.
    let mut runs: HashMap<PackId, Vec<(std::ops::Range<u64>, std::path::PathBuf)>> = HashMap::new();
    let mut by_file: HashMap<std::path::PathBuf, (u64, Vec<Located>)> = HashMap::new();
    for (chunk, spot) in unique {
        if let Some(data) = seeds.read(chunk.id, chunk.size) {
            placer.place(chunk.id, data).map_err(written)?;
            continue;
        }
        let Some(spot) = spot else {
            // A format 1 chunk, cached decoded: `read` checks it and drops a damaged file.
            match cache.read(&chunk)? {
                Some(data) => placer.place(chunk.id, &data).map_err(written)?,
                None => missing.push((chunk, None)),
            }
            continue;
        };
        let end = spot.offset + chunk.stored_size;
        let held = runs
            .entry(spot.pack)
            .or_insert_with(|| cache.runs(spot.pack))
            .iter()
            .find(|(range, _)| range.start <= spot.offset && end <= range.end);
        match held {
            Some((range, file)) => by_file
                .entry(file.clone())
                .or_insert_with(|| (range.start, Vec::new()))
                .1
                .push((chunk, Some(spot))),
            None if !chunk_files => missing.push((chunk, Some(spot))),
            // Fetched from another mirror's packs last time: kept as a chunk file.
            None => match cache.read(&chunk)? {
                Some(data) => placer.place(chunk.id, &data).map_err(written)?,
                None => missing.push((chunk, Some(spot))),
            },
        }
    }
    for (file, (start, chunks)) in by_file {
        // Gone since it was listed (evicted by another process): fetched instead.
        let stored = match std::fs::read(&file) {
            Ok(stored) => stored,
            Err(_) => {
                missing.extend(chunks);
                continue;
            }
        };
        cache.touch(&file);
        let mut damaged = false;
        for (chunk, spot) in chunks {
            let at = (spot.expect("packed").offset - start) as usize;
            let body = stored.get(at..at + chunk.stored_size as usize);
            match body.map(|body| decode_in_place(body, &chunk)) {
                Some(Ok(data)) => placer.place(chunk.id, &data).map_err(written)?,
                _ => {
                    damaged = true;
                    missing.push((chunk, spot));
                }
            }
        }
        if damaged {
            cache.drop_run(&file);
        }
    }
    for used in seeds.used() {
        cache.touch(used);
    }
    Ok(missing)
}

/// The key's seeds, open, with where each chunk lies in them.
struct Seeds {
    seeds: Vec<(Seed, Option<File>, bool)>,
    at: HashMap<Digest, (usize, u64)>,
    buffer: Vec<u8>,
}

impl Seeds {
    fn open(seeds: Vec<Seed>) -> Self {
        let mut at = HashMap::new();
        for (s, seed) in seeds.iter().enumerate() {
            for chunk in &seed.manifest.chunks {
                at.entry(chunk.id).or_insert((s, chunk.offset));
            }
        }
        let seeds = seeds
            .into_iter()
            .map(|seed| {
                let file = File::open(&seed.data).ok();
                (seed, file, false)
            })
            .collect();
        Self {
            seeds,
            at,
            buffer: Vec::new(),
        }
    }

    /// The chunk's content from a seed, if one has it sound (the output it was may have been
    /// changed since, or be a killed get's, with holes).
    fn read(&mut self, id: Digest, size: u32) -> Option<&[u8]> {
        let &(s, offset) = self.at.get(&id)?;
        let (_, file, used) = &mut self.seeds[s];
        self.buffer.resize(size as usize, 0);
        file.as_ref()?
            .read_exact_at(&mut self.buffer, offset)
            .ok()?;
        if !id.verifies(&self.buffer) {
            return None;
        }
        *used = true;
        Some(&self.buffer)
    }

    fn used(&self) -> impl Iterator<Item = &std::path::Path> {
        self.seeds
            .iter()
            .filter(|(_, _, used)| *used)
            .map(|(seed, _, _)| seed.data.as_path())
    }
}
