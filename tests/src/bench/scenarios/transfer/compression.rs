//! What `put --compression auto` chooses at 10, 100 and 1000 Mbit/s, and how fast the
//! artifact then moves, beside the encodings that can be forced at the same cap, so that
//! the reader sees whether auto chose well. The artifact is real build output.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::site::{path_str, remove, Site, NGINX_PORT};
use super::{artifact, times};
use crate::bench::report::{Facts, ScenarioReport};
use crate::bench::stats::{fmt_bits_per_s, fmt_bytes, median};
use crate::bench::Context;

const KEY: &str = "bench/build-output.bin";
const CAPS_MBIT: [u64; 3] = [10, 100, 1000];
const FIRST_STORE: &str = "store";

/// `--compression` values, and how each is described. `zstd` is level 3 (the CLI forces no
/// other level), `gzip` level 6.
const MODES: [(&str, &str); 4] = [
    ("auto", "auto"),
    ("none", "none (forced)"),
    ("zstd", "zstd-3 (forced)"),
    ("gzip", "gzip-6 (forced)"),
];

/// One put's figures.
struct Put {
    encoding: String,
    link: Option<f64>,
    stored: u64,
    /// Artifact bytes over the transfer's own time (the summary's `elapsed_ms`).
    effective: f64,
    wall: f64,
}

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(3, 1);
    let wanted: u64 = if cx.options.quick { 16 << 20 } else { 32 << 20 };
    let site = Site::new(&[])?;
    let source = site.path("build-output.bin");
    let bin = crate::agent::try_binary()?;
    let deps = bin
        .parent()
        .map(|p| p.join("deps"))
        .unwrap_or_else(|| "deps".into());
    let built = artifact::build_output(&source, wanted, &deps)?;
    let size = built.size;
    // Uncapped, once: writes the bandwidth object that every later store starts with.
    put(&site, FIRST_STORE, &source, "none")?;
    let mut stores = 0;
    report.notes.push(format!(
        "The artifact is real build output: {}, the first {} `.rlib` files of {} in name \
         order, concatenated (the last one cut short). A client and a mirror namespace joined \
         by a veth pair, nginx in the mirror namespace; both veth ends shaped by tbf to the \
         cap, with a burst of 1 ms at the rate (at least 32 KiB), so the 1 MiB read that \
         `auto` takes its link figure from sees the same link as the upload. Every put goes \
         to an empty store that holds only the bandwidth object, with a fresh client \
         cache, so every chunk is compressed and sent, and `auto` measures the link itself. \
         Effective throughput is the artifact's size over the transfer's own time \
         (`elapsed_ms`: hashing, compressing and sending overlapped; for auto it includes \
         measuring the compressor at 5 levels on the file's first 256 KiB); the wall time \
         adds process start and, for auto, the link measurement. {rounds} round(s), the \
         modes in rotated order. Forced zstd at levels 1 and 19 is not shown: the CLI forces \
         zstd only at level 3.",
        fmt_bytes(size),
        built.files,
        built.from.display(),
    ));
    let mut table = Facts {
        title: format!("put of {} of build output, by link cap", fmt_bytes(size)),
        headers: [
            "cap",
            "--compression",
            "stored as",
            "link figure auto used",
            "stored",
            "effective min",
            "effective median",
            "effective max",
            "wall median",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut verdicts = Facts {
        title: "Did auto choose well? (median effective throughput)".into(),
        headers: [
            "cap",
            "auto chose",
            "auto",
            "best forced",
            "auto / best forced",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut raw = Vec::new();
    for (c, mbit) in CAPS_MBIT.iter().enumerate() {
        site.shape(*mbit)?;
        let mut puts: Vec<Vec<Put>> = (0..MODES.len()).map(|_| Vec::new()).collect();
        for round in 1..=rounds {
            cx.check_interrupt()?;
            cx.progress(title, c * rounds + round, CAPS_MBIT.len() * rounds);
            for k in 0..MODES.len() {
                let m = (k + round) % MODES.len();
                stores += 1;
                let store = format!("store-{stores}");
                site.fresh_store(&store, FIRST_STORE)?;
                let done = put(&site, &store, &source, MODES[m].0)?;
                raw.push(json!({"cap_mbit": mbit, "round": round, "mode": MODES[m].0,
                                "encoding": done.encoding, "link_bytes_per_sec": done.link,
                                "stored_bytes": done.stored, "effective_bytes_per_sec": done.effective,
                                "wall_s": done.wall}));
                puts[m].push(done);
            }
        }
        let medians: Vec<Option<f64>> = puts
            .iter()
            .map(|p| median(&p.iter().map(|p| p.effective).collect::<Vec<_>>()))
            .collect();
        for (m, done) in puts.iter().enumerate() {
            table.rows.push(row(*mbit, MODES[m].1, done, size));
        }
        let best = (1..MODES.len())
            .filter_map(|m| medians[m].map(|v| (m, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        verdicts.rows.push(vec![
            format!("{mbit} Mbit/s"),
            encodings(&puts[0]),
            medians[0].map_or("–".into(), fmt_bits_per_s),
            best.map_or("–".into(), |(m, v)| {
                format!("{}: {}", MODES[m].1, fmt_bits_per_s(v))
            }),
            times(medians[0].zip(best).map(|(auto, (_, best))| auto / best)),
        ]);
    }
    report.facts.push(table);
    report.facts.push(verdicts);
    report.raw = json!({"artifact_bytes": size, "rlib_files": built.files, "puts": raw});
    Ok(())
}

/// A put of `source` into `store` with a fresh cache.
fn put(site: &Site, store: &str, source: &std::path::Path, mode: &str) -> Result<Put> {
    let config = site.config("mirror", &site.store_url(NGINX_PORT, store))?;
    let config = config.as_path();
    let cache = site.path("put-cache");
    remove(&cache)?;
    let run = site.netwatch(
        config,
        &[
            "put",
            path_str(source)?,
            KEY,
            "--compression",
            mode,
            "--cache",
            path_str(&cache)?,
        ],
    )?;
    let artifact = run.u64("artifact_bytes")?;
    Ok(Put {
        encoding: run.text("encoding").unwrap_or("?").to_string(),
        link: run.summary["link_bytes_per_sec"].as_f64(),
        stored: run.u64("bytes_moved")?,
        effective: artifact as f64 / run.elapsed()?.as_secs_f64().max(1e-3),
        wall: run.wall.as_secs_f64(),
    })
}

fn row(mbit: u64, mode: &str, puts: &[Put], size: u64) -> Vec<String> {
    let effective: Vec<f64> = puts.iter().map(|p| p.effective).collect();
    let cell = |v: Option<f64>| v.map_or("–".to_string(), fmt_bits_per_s);
    let links: Vec<f64> = puts.iter().filter_map(|p| p.link).collect();
    let stored: Vec<f64> = puts.iter().map(|p| p.stored as f64).collect();
    let stored = median(&stored).unwrap_or(0.0);
    vec![
        format!("{mbit} Mbit/s"),
        mode.to_string(),
        encodings(puts),
        median(&links).map_or("–".into(), fmt_bits_per_s),
        format!(
            "{} ({:.1}%)",
            fmt_bytes(stored as u64),
            stored / size as f64 * 100.0
        ),
        cell(effective.iter().copied().reduce(f64::min)),
        cell(median(&effective)),
        cell(effective.iter().copied().reduce(f64::max)),
        median(&puts.iter().map(|p| p.wall).collect::<Vec<_>>())
            .map_or("–".into(), |s| format!("{s:.2} s")),
    ]
}

/// The encodings the puts stored with: "zstd-3", or "zstd-3 ×2, none ×1" when they differ.
fn encodings(puts: &[Put]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in puts {
        *counts.entry(p.encoding.as_str()).or_default() += 1;
    }
    if counts.len() == 1 {
        return counts.into_keys().next().unwrap_or("?").to_string();
    }
    counts
        .iter()
        .map(|(e, n)| format!("{e} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
