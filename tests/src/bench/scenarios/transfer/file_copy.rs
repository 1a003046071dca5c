//! `netwatch get` from a `file://` mirror against `cp` of the same bytes as one file: what
//! netwatch costs over a plain local copy when no network is involved (same disk, same
//! client namespace, rotated order).

use std::path::Path;

use anyhow::Result;

use super::site::{check_size, path_str, remove, settle, Site};
use crate::bench::report::Table;
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;

pub const METHODS: [&str; 2] = [
    "netwatch get from a file:// mirror",
    "cp FILE (one plain file)",
];

/// The timings and each method's rates (bytes per second), in [`METHODS`] order.
pub struct Copies {
    pub table: Table,
    pub rates: Vec<Vec<f64>>,
}

/// Puts `source` (`size` bytes) as `key` into a file mirror once, then each round gets it
/// into a new cache (removed after) and copies the file with `cp`.
pub fn get_against_cp(
    cx: &mut Context,
    site: &Site,
    source: &Path,
    (key, size): (&str, u64),
    rounds: usize,
    title: &str,
) -> Result<Copies> {
    let store = site.path("file-mirror");
    std::fs::create_dir_all(&store)?;
    let config = site.config("files", &format!("file://{}", store.display()))?;
    site.put_raw(&config, source, key)?;
    let mut table = Table::new(
        "file-get",
        &format!("Time to fetch {} from a local directory", fmt_bytes(size)),
        &METHODS,
    );
    let mut rates = vec![Vec::new(); METHODS.len()];
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        for k in 0..METHODS.len() {
            let m = (k + round) % METHODS.len();
            let out = site.path(&format!("file-copy-{m}.bin"));
            settle();
            let wall = if m == 0 {
                let cache = site.path(&format!("file-get-cache-{round}"));
                let args = ["get", key, path_str(&out)?, "--cache", path_str(&cache)?];
                let wall = site.netwatch(&config, &args)?.wall;
                // Untimed; kept, it would grow the page cache 512 MiB a round (see
                // `throughput.rs`).
                remove(&cache)?;
                wall
            } else {
                site.timed("cp", &[path_str(source)?, path_str(&out)?])?.0
            };
            check_size(&out, size, METHODS[m])?;
            remove(&out)?;
            table.record(METHODS[m], Some(wall.as_nanos() as i64));
            rates[m].push(size as f64 / wall.as_secs_f64());
        }
    }
    Ok(Copies { table, rates })
}
