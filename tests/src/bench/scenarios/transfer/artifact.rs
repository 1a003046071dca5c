//! The artifacts the transfer benchmarks move: incompressible pseudo-random bytes (so the
//! bytes on the wire are the same for netwatch and curl), real build output (the workspace's
//! release `.rlib` files, for compression), and a 1% edit of a file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::random::Random;

/// Writes `size` pseudo-random bytes from `seed` to `path`.
pub fn random_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut out =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut random = Random::new(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        random.fill(&mut block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// What [`build_output`] put together.
pub struct BuildOutput {
    pub size: u64,
    pub files: usize,
    pub from: PathBuf,
}

/// Concatenates the `.rlib` files of `deps` (in name order) into `path`, up to `size`
/// bytes: real, compressible build output, and all different (copies of one file would be
/// deduplicated by the chunker rather than compressed).
pub fn build_output(path: &Path, size: u64, deps: &Path) -> Result<BuildOutput> {
    let mut rlibs: Vec<PathBuf> = std::fs::read_dir(deps)
        .with_context(|| format!("listing {} for build output", deps.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rlib"))
        .collect();
    rlibs.sort();
    if rlibs.is_empty() {
        bail!(
            "{} holds no .rlib files to use as build output: build the workspace in release \
             mode first (`cargo xtask bench` does)",
            deps.display()
        );
    }
    let mut out =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let (mut written, mut files) = (0u64, 0);
    for rlib in &rlibs {
        if written >= size {
            break;
        }
        let mut file = File::open(rlib)?.take(size - written);
        written += std::io::copy(&mut file, &mut out)
            .with_context(|| format!("copying {}", rlib.display()))?;
        files += 1;
    }
    out.flush()?;
    Ok(BuildOutput {
        size: written,
        files,
        from: deps.to_path_buf(),
    })
}

/// What [`edit`] changed.
pub struct Edit {
    pub places: usize,
    pub overwritten: u64,
    pub inserted: u64,
}

/// Writes `src` edited to `dst`: `fraction` of its size in new random bytes, spread over
/// `places` places chosen at random, alternately overwriting and inserting.
pub fn edit(src: &Path, dst: &Path, fraction: f64, places: usize, seed: u64) -> Result<Edit> {
    let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    let mut random = Random::new(seed);
    let each = ((data.len() as f64 * fraction) / places as f64) as usize;
    // One place per equal slice of the file, at a random offset within it.
    let slice = data.len() / places;
    if each == 0 || slice <= each {
        bail!(
            "cannot edit {} ({} bytes) in {places} places of {each} bytes",
            src.display(),
            data.len()
        );
    }
    let mut out = Vec::with_capacity(data.len() + each * places);
    let mut patch = vec![0u8; each];
    let mut edit = Edit {
        places,
        overwritten: 0,
        inserted: 0,
    };
    let mut from = 0;
    for place in 0..places {
        let at = place * slice + random.below((slice - each) as u64) as usize;
        out.extend_from_slice(&data[from..at]);
        random.fill(&mut patch);
        out.extend_from_slice(&patch);
        if place % 2 == 0 {
            from = at + each;
            edit.overwritten += each as u64;
        } else {
            from = at;
            edit.inserted += each as u64;
        }
    }
    out.extend_from_slice(&data[from..]);
    std::fs::write(dst, &out).with_context(|| format!("writing {}", dst.display()))?;
    Ok(edit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_overwrites_and_inserts_the_fraction_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
        random_file(&src, 100_000, 7).expect("write");
        let edit = edit(&src, &dst, 0.01, 4, 1).expect("edit");
        assert_eq!((edit.overwritten, edit.inserted), (500, 500));
        let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert_eq!(b.len(), a.len() + 500);
        assert_ne!(a, b[..a.len()]);
        assert_eq!(a[a.len() - 100..], b[b.len() - 100..], "the tail is kept");
    }
}
