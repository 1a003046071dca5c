//! The Azure backend beside a plain client on the same server: `netwatch put` and `get` of an
//! incompressible artifact through Azurite (Microsoft's emulator, on loopback, in memory),
//! and curl uploading and downloading the same bytes as one block blob with a Shared Key
//! signed request. Each round runs the four in rotated order. Reported, not judged: the
//! issue asks for the row, and Azurite (Node.js) is not Azure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::{artifact, paired_ratio, spread_row, times, SPREAD_HEADERS};
use crate::bench::report::{Facts, ScenarioReport};
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;
use crate::servers::azurite::Azurite;

const KEY: &str = "bench/azure.bin";
const METHODS: [&str; 4] = [
    "netwatch put",
    "curl -T (one block blob)",
    "netwatch get",
    "curl -o (one block blob)",
];

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(3, 1);
    let size: u64 = if cx.options.quick { 16 << 20 } else { 64 << 20 };
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().context("a directory for the Azure bench")?;
    let source = dir.path().join("source.bin");
    artifact::random_file(&source, size, 31)?;
    report.notes.push(format!(
        "Azurite {} on loopback, its data in memory; {} of pseudo-random bytes. netwatch puts \
         with `--compression none` into a new prefix each round and gets into a new cache; \
         curl moves the same bytes as one blob (Put Blob, Get Blob) with Shared Key headers the \
         bench signs. Wall clock from process start to exit.",
        "3.35",
        fmt_bytes(size)
    ));
    let mut rates = vec![Vec::new(); METHODS.len()];
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        let work = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&work)?;
        let config = work.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[[mirror]]\nname = \"az\"\nurl = \"{}\"\n",
                azurite.url(&format!("bench-{round}"))
            ),
        )?;
        let blob = format!("plain-{round}.bin");
        for k in 0..METHODS.len() {
            let m = (k + round) % METHODS.len();
            // A get needs the put before it: within a round, puts go first.
            let m = if k < 2 { m % 2 } else { 2 + m % 2 };
            let took = match m {
                0 => netwatch(
                    &azurite,
                    &config,
                    &work,
                    &["put", path(&source)?, KEY, "--compression", "none"],
                )?,
                1 => {
                    let (url, headers) = azurite.signed_blob_request("PUT", &blob, Some(size));
                    curl(&headers, &["-T", path(&source)?, &url])?
                }
                2 => {
                    let out = work.join("netwatch.out");
                    let took = netwatch(&azurite, &config, &work, &["get", KEY, path(&out)?])?;
                    same(&source, &out)?;
                    took
                }
                _ => {
                    let out = work.join("curl.out");
                    let (url, headers) = azurite.signed_blob_request("GET", &blob, None);
                    let took = curl(&headers, &["-o", path(&out)?, &url])?;
                    same(&source, &out)?;
                    took
                }
            };
            rates[m].push(size as f64 / took.as_secs_f64());
        }
    }
    let (put_ratio, _) = paired_ratio(&rates[0], &rates[1]);
    let (get_ratio, _) = paired_ratio(&rates[2], &rates[3]);
    let mut facts = Facts {
        title: format!(
            "Azurite, {}: throughput (netwatch put at {} of curl's, get at {})",
            fmt_bytes(size),
            times(put_ratio),
            times(get_ratio)
        ),
        headers: SPREAD_HEADERS.map(String::from).to_vec(),
        rows: Vec::new(),
    };
    for (method, rates) in METHODS.iter().zip(&rates) {
        facts.rows.push(spread_row(method, rates));
    }
    report.facts.push(facts);
    report.raw = json!({"bytes": size, "rates": METHODS.iter().zip(&rates).map(|(m, r)| json!({"method": m, "bytes_per_sec": r})).collect::<Vec<_>>()});
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("bench paths are UTF-8")
}

/// `netwatch ARGS --config C --cache WORK/cache --socket WORK/none.sock --json`, timed.
fn netwatch(azurite: &Azurite, config: &Path, work: &Path, args: &[&str]) -> Result<Duration> {
    let mut command = crate::cli::netwatch(None);
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--cache")
        .arg(work.join(format!("cache-{}", args[0])))
        .arg("--socket")
        .arg(work.join("none.sock"))
        .arg("--json")
        .envs(azurite.client_env());
    timed(command, "netwatch")
}

fn curl(headers: &[String], args: &[&str]) -> Result<Duration> {
    let mut command = Command::new("curl");
    command.args(["-sS", "--fail"]);
    for header in headers {
        command.arg("-H").arg(header);
    }
    command.args(args);
    timed(command, "curl")
}

fn timed(mut command: Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}

fn same(a: &Path, b: &Path) -> Result<()> {
    if std::fs::read(a)? != std::fs::read(b)? {
        bail!("{} came back different", b.display());
    }
    std::fs::remove_file(b)?;
    Ok(())
}
