//! What a put, a cold get and a 1% edit's re-put cost in requests against an S3 server,
//! counted by the server itself (SeaweedFS's `SeaweedFS_s3_request_total`): the issue's
//! request targets on S3, beside the nginx counts of `transfer-throughput` and
//! `transfer-delta`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::artifact;
use super::backend::{netwatch, path, same, Server};
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;
use crate::servers::seaweed::Seaweed;

const KEY: &str = "bench/requests.bin";
/// As `transfer-delta`: 1% of the artifact, in 6 places.
const FRACTION: f64 = 0.01;
const PLACES: usize = 6;

/// Counts the requests of a put, a cold get and the re-put of a 1% edit.
pub fn run(
    cx: &Context,
    report: &mut ScenarioReport,
    server: &Server,
    dir: &Path,
) -> Result<Value> {
    let Server::S3(seaweed) = server else {
        bail!("request counts need SeaweedFS's metrics");
    };
    let size: u64 = if cx.options.quick {
        64 << 20
    } else {
        512 << 20
    };
    let work = dir.join("requests");
    std::fs::create_dir_all(&work)?;
    let (source, edited) = (work.join("v1.bin"), work.join("v2.bin"));
    artifact::random_file(&source, size, 53)?;
    artifact::edit(&source, &edited, FRACTION, PLACES, 54)?;
    let config = work.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"bench\"\nurl = \"{}\"\n",
            server.url("requests")
        ),
    )?;
    let put = |file: &Path, cache: &str| -> Result<BTreeMap<String, u64>> {
        counted(seaweed, || {
            netwatch(
                server,
                &config,
                &work.join(cache),
                &["put", path(file)?, KEY, "--compression", "none"],
            )
        })
    };
    let first = put(&source, "put-1")?;
    let out = work.join("out.bin");
    let cold = counted(seaweed, || {
        netwatch(
            server,
            &config,
            &work.join("get"),
            &["get", KEY, path(&out)?],
        )
    })?;
    same(&source, &out)?;
    let again = put(&edited, "put-2")?;
    let rows = [
        (format!("put of {}", fmt_bytes(size)), &first, 64),
        (
            "cold get (the mirror measurement included)".to_string(),
            &cold,
            64,
        ),
        (
            format!("re-put after a {}% edit", FRACTION * 100.0),
            &again,
            16,
        ),
    ];
    let mut facts = Facts {
        title: format!(
            "Requests to SeaweedFS (S3), counted by the server, {} artifact",
            fmt_bytes(size)
        ),
        headers: ["operation", "requests", "by type", "target"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    for (what, counts, limit) in &rows {
        let total: u64 = counts.values().sum();
        let by_type = counts
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        facts.rows.push(vec![
            what.clone(),
            total.to_string(),
            by_type,
            format!("<= {limit}"),
        ]);
        report.targets.push(Target {
            what: format!("S3 requests: {what}"),
            goal: format!("<= {limit}"),
            figure: total.to_string(),
            pass: total <= *limit,
            miss_by: (total > *limit).then(|| format!("{} over", total - limit)),
        });
    }
    report.facts.push(facts);
    Ok(json!({
        "bytes": size,
        "put": first,
        "cold_get": cold,
        "edit_put": again,
    }))
}

/// The requests the server counted while `f` ran, by type.
fn counted(
    seaweed: &Seaweed,
    f: impl FnOnce() -> Result<std::time::Duration>,
) -> Result<BTreeMap<String, u64>> {
    let before = seaweed.requests();
    f()?;
    let after = seaweed.requests();
    Ok(after
        .into_iter()
        .map(|(kind, n)| {
            let was = before.get(&kind).copied().unwrap_or(0);
            (kind, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect())
}
