//! Single mirror, no cap: `netwatch get` of an incompressible artifact against `curl`
//! fetching the same bytes as one plain file from the same nginx, in rotated order. A third
//! run puts netwatch's cache and output on tmpfs, to tell the file system's share of its
//! time from the network's (a diagnostic, not judged). Then `put` against `curl -T`, and a
//! get from a `file://` mirror against `cp`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::site::{check_size, path_str, remove, settle, Run, Site, NGINX_PORT};
use super::{artifact, best_ratio, file_copy, paired_ratio, spread_row, times, SPREAD_HEADERS};
use crate::bench::report::{Facts, ScenarioReport, Table, Target};
use crate::bench::stats::{fmt_bytes, median};
use crate::bench::Context;

const SIZE: u64 = 512 << 20;
const KEY: &str = "bench/random.bin";
const STORE: &str = "store";
const NETWATCH: &str = "netwatch get (8 chunks in flight)";
const NETWATCH_TMPFS: &str = "netwatch get, cache and output on tmpfs (diagnostic)";
const CURL: &str = "curl -o FILE (one plain file)";
/// statfs(2)'s f_type of a tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(5, 2);
    let site = Site::new(&["curl"])?;
    let source = site.path("random.bin");
    artifact::random_file(&source, SIZE, 1)?;
    site.place_plain(&source, "random.bin")?;
    let config = site.config("mirror", &site.store_url(NGINX_PORT, STORE))?;
    let mark = site.nginx.requests().len();
    let put = site.put_raw(&config, &source, KEY)?;
    let put_requests = site.nginx.requests().split_off(mark);
    let mut get_requests = Vec::new();
    let shm = tmpfs_dir();
    report.notes.push(format!(
        "A client and a mirror namespace joined by a veth pair, nginx (sendfile) in the mirror \
         namespace. The artifact is {} of pseudo-random bytes, put with `--compression none`, \
         so netwatch and curl move the same bytes (netwatch adds its manifest, {}). Each round \
         runs every method once, in rotated order; netwatch's chunk cache is new every round (a \
         full fetch, its mirror probe included) and removed after the run (untimed: a cache is \
         a few pack ranges now, and kept ones grew the page cache onto memory the VM's host had \
         taken back, which stalled later runs for seconds). \
         Times are wall clock from process start to exit; before each, the bench waits \
         (untimed, `sync`) for the disk to write back what earlier runs left, so no method \
         pays for another's writeback. netwatch checks each chunk's \
         BLAKE3 digest as it arrives, writes it into the output, which is linked into its cache (no \
         second copy), starts the disk's writeback as each range is placed, and fsyncs the \
         output before renaming it into place; curl only writes the file. Cache and outputs are \
         on {}.{}",
        fmt_bytes(SIZE),
        fmt_bytes(put.u64("manifest_bytes")?),
        fs_name(site.dir.path()),
        if shm.is_none() {
            " /dev/shm is not a tmpfs here, so the tmpfs run is left out."
        } else {
            ""
        }
    ));
    let mut methods = vec![NETWATCH, CURL];
    if shm.is_some() {
        methods.push(NETWATCH_TMPFS);
    }
    let mut table = Table::new(
        "get",
        &format!("Time to fetch {}, no cap", fmt_bytes(SIZE)),
        &methods,
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut phases: Vec<Vec<[f64; 3]>> = vec![Vec::new(); methods.len()];
    let mut raw = Vec::new();
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        let mut entry = json!({"round": round});
        for k in 0..methods.len() {
            let m = (k + round) % methods.len();
            settle();
            let wall = match methods[m] {
                CURL => {
                    let out = site.path("curl.bin");
                    let url = site.plain_url(NGINX_PORT, "random.bin");
                    let (wall, _) =
                        site.timed("curl", &["-sS", "--fail", "-o", path_str(&out)?, &url])?;
                    check_size(&out, SIZE, "curl")?;
                    remove(&out)?;
                    wall
                }
                method => {
                    let dir = match (method, &shm) {
                        (NETWATCH_TMPFS, Some(shm)) => shm.path().to_path_buf(),
                        _ => site.dir.path().to_path_buf(),
                    };
                    let mark = site.nginx.requests().len();
                    let run = fetch(&site, &config, &dir, round)?;
                    get_requests.push(site.nginx.requests().len() - mark);
                    // Untimed. Kept caches made the page cache grow by 512 MiB a round,
                    // onto memory this VM's host had taken back: runs stalled for seconds.
                    remove(&dir.join(format!("get-cache-{round}")))?;
                    phases[m].push(phases_of(&run)?);
                    entry[method] = run.summary;
                    run.wall
                }
            };
            table.record(methods[m], Some(wall.as_nanos() as i64));
            rates[m].push(SIZE as f64 / wall.as_secs_f64());
            entry[format!("{} wall_s", methods[m])] = json!(wall.as_secs_f64());
        }
        raw.push(entry);
    }
    let (ratio, ratios) = paired_ratio(&rates[0], &rates[1]);
    report.facts.push(Facts {
        title: format!("Throughput fetching {}, no cap", fmt_bytes(SIZE)),
        headers: SPREAD_HEADERS.iter().map(|h| h.to_string()).collect(),
        rows: methods
            .iter()
            .zip(&rates)
            .map(|(method, r)| spread_row(method, r))
            .collect(),
    });
    report.facts.push(phase_table(&methods, &phases));
    let most_gets = get_requests.iter().copied().max().unwrap_or(0);
    report.facts.push(Facts {
        title: format!(
            "Requests to the mirror (nginx's access log), {} artifact",
            fmt_bytes(SIZE)
        ),
        headers: vec!["operation".into(), "requests".into(), "by method".into()],
        rows: vec![
            vec![
                "put (first, to an empty mirror)".into(),
                put_requests.len().to_string(),
                by_method(&put_requests),
            ],
            vec![
                "cold get, most in a round (the mirror measurement included)".into(),
                most_gets.to_string(),
                String::new(),
            ],
        ],
    });
    report.targets.push(Target::value_below(
        "requests of the put",
        "<= 64",
        Some(put_requests.len() as f64),
        64.5,
        "",
    ));
    report.targets.push(Target::value_below(
        "requests of a cold get",
        "<= 64",
        Some(most_gets as f64),
        64.5,
        "",
    ));
    report.targets.push(Target::at_least(
        "netwatch get throughput / curl's, median of the rounds' ratios",
        ">= 1.0",
        ratio,
        1.0,
        "",
    ));
    report.tables.push(table);
    let puts = put_against_curl(cx, &site, &source, rounds, title)?;
    let (put_ratio, put_ratios) = paired_ratio(&puts.rates[0], &puts.rates[1]);
    report.facts.push(Facts {
        title: format!("Throughput storing {}, no cap", fmt_bytes(SIZE)),
        headers: SPREAD_HEADERS.iter().map(|h| h.to_string()).collect(),
        rows: PUT_METHODS
            .iter()
            .zip(&puts.rates)
            .map(|(method, r)| spread_row(method, r))
            .collect(),
    });
    report.targets.push(Target::at_least(
        "netwatch put throughput / curl -T's, median of the rounds' ratios",
        ">= 1.0",
        put_ratio,
        1.0,
        "",
    ));
    report.tables.push(puts.table);
    let copies = file_copy::get_against_cp(cx, &site, &source, (KEY, SIZE), rounds, title)?;
    let (copy_ratio, copy_ratios) = paired_ratio(&copies.rates[0], &copies.rates[1]);
    report.facts.push(Facts {
        title: format!(
            "Throughput fetching {} from a local directory",
            fmt_bytes(SIZE)
        ),
        headers: SPREAD_HEADERS.iter().map(|h| h.to_string()).collect(),
        rows: file_copy::METHODS
            .iter()
            .zip(&copies.rates)
            .map(|(method, r)| spread_row(method, r))
            .collect(),
    });
    report.targets.push(Target::at_least(
        "netwatch get from a file:// mirror / cp, median of the rounds' ratios",
        ">= 0.9",
        copy_ratio,
        0.9,
        "",
    ));
    report.tables.push(copies.table);
    let rounds_of = |ratios: &[f64]| {
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        each.join(", ")
    };
    report.facts.push(Facts {
        title: "netwatch against the plain tool: each round, and each at its fastest round".into(),
        headers: [
            "comparison",
            "rounds' ratios",
            "median",
            "fastest round against fastest round",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        rows: [
            ("get / curl -o", &ratios, &rates[0], &rates[1]),
            ("put / curl -T", &put_ratios, &puts.rates[0], &puts.rates[1]),
            (
                "get from file:// / cp",
                &copy_ratios,
                &copies.rates[0],
                &copies.rates[1],
            ),
        ]
        .into_iter()
        .map(|(what, each, ours, theirs)| {
            vec![
                what.to_string(),
                rounds_of(each),
                times(median(each)),
                times(best_ratio(ours, theirs)),
            ]
        })
        .collect(),
    });
    report.raw = json!({"artifact_bytes": SIZE, "ratios": ratios, "rounds": raw,
        "put_requests": put_requests, "get_requests": get_requests, "put_ratios": put_ratios,
        "file_get_ratios": copy_ratios});
    Ok(())
}

const PUT_METHODS: [&str; 2] = [
    "netwatch put --compression none (to an empty store)",
    "curl -T FILE (one plain PUT)",
];

/// Put timings: the table and each method's rates.
struct Puts {
    table: Table,
    rates: Vec<Vec<f64>>,
}

/// `netwatch put` of `source` to a fresh store each round against `curl -T` of the same
/// file to the same nginx, in rotated order.
fn put_against_curl(
    cx: &mut Context,
    site: &Site,
    source: &Path,
    rounds: usize,
    title: &str,
) -> Result<Puts> {
    let mut table = Table::new(
        "put",
        &format!("Time to store {}, no cap", fmt_bytes(SIZE)),
        &PUT_METHODS,
    );
    let mut rates = vec![Vec::new(); PUT_METHODS.len()];
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        for k in 0..PUT_METHODS.len() {
            let m = (k + round) % PUT_METHODS.len();
            let wall = if m == 0 {
                let store = format!("put-store-{round}");
                site.fresh_store(&store, STORE)?;
                let config =
                    site.config(&format!("put-{round}"), &site.store_url(NGINX_PORT, &store))?;
                settle();
                let wall = site.put_raw(&config, source, KEY)?.wall;
                remove(&site.nginx.root().join(&store))?;
                wall
            } else {
                let url = site.plain_url(NGINX_PORT, &format!("curl-put-{round}.bin"));
                settle();
                let (wall, _) =
                    site.timed("curl", &["-sS", "--fail", "-T", path_str(source)?, &url])?;
                remove(&site.plain_path(&format!("curl-put-{round}.bin")))?;
                wall
            };
            table.record(PUT_METHODS[m], Some(wall.as_nanos() as i64));
            rates[m].push(SIZE as f64 / wall.as_secs_f64());
        }
    }
    Ok(Puts { table, rates })
}

/// "PUT 9, GET 3, HEAD 2": the requests counted by method.
fn by_method(requests: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for request in requests {
        let method = request.split_whitespace().next().unwrap_or("?");
        *counts.entry(method).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(method, n)| format!("{method} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A full `netwatch get` into `dir`: a new cache there, the output removed after.
fn fetch(site: &Site, config: &Path, dir: &Path, round: usize) -> Result<Run> {
    let out = dir.join("netwatch.bin");
    let cache = dir.join(format!("get-cache-{round}"));
    let run = site.netwatch(
        config,
        &["get", KEY, path_str(&out)?, "--cache", path_str(&cache)?],
    )?;
    check_size(&out, SIZE, "netwatch get")?;
    remove(&out)?;
    Ok(run)
}

/// Seconds: before the transfer (process start, configuration, mirror probe), while a chunk
/// request was in flight (the mirror's `busy_ms`), and the rest of the transfer (mostly
/// assembling, checking and flushing the output).
fn phases_of(run: &Run) -> Result<[f64; 3]> {
    let elapsed = run.elapsed()?.as_secs_f64();
    let busy = run.summary["mirrors"]["mirror"]["busy_ms"]
        .as_u64()
        .map(|ms| Duration::from_millis(ms).as_secs_f64())
        .context("the summary has no busy_ms for mirror `mirror`")?;
    Ok([
        run.wall.as_secs_f64() - elapsed,
        busy,
        (elapsed - busy).max(0.0),
    ])
}

fn phase_table(methods: &[&str], phases: &[Vec<[f64; 3]>]) -> Facts {
    let mut rows = Vec::new();
    for (method, runs) in methods.iter().zip(phases) {
        if runs.is_empty() {
            continue;
        }
        let cell = |i: usize| {
            let values: Vec<f64> = runs.iter().map(|p| p[i]).collect();
            median(&values).map_or("–".into(), |s| format!("{s:.2} s"))
        };
        rows.push(vec![method.to_string(), cell(0), cell(1), cell(2)]);
    }
    Facts {
        title: "Where netwatch's time went (medians)".into(),
        headers: [
            "method",
            "start and mirror probe",
            "chunk requests in flight",
            "after: assemble, check, fsync",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// A directory on /dev/shm if that is a tmpfs.
fn tmpfs_dir() -> Option<tempfile::TempDir> {
    let shm = PathBuf::from("/dev/shm");
    if fs_type(&shm)? != TMPFS_MAGIC {
        return None;
    }
    tempfile::Builder::new()
        .prefix("netwatch-bench-")
        .tempdir_in(shm)
        .ok()
}

fn fs_type(path: &Path) -> Option<i64> {
    let c_path = std::ffi::CString::new(path.to_str()?).ok()?;
    // SAFETY: `statfs` is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `stat` a valid struct for statfs to fill.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then_some(stat.f_type as i64)
}

/// "tmpfs", "ext4 (or another disk file system)".
fn fs_name(path: &Path) -> &'static str {
    match fs_type(path) {
        Some(TMPFS_MAGIC) => "tmpfs",
        Some(0xef53) => "ext4",
        Some(0x5846_5342) => "xfs",
        Some(0x9123_683e) => "btrfs",
        _ => "a disk file system",
    }
}
