//! What a 1% edit costs: put an artifact and get it, edit 1% of it (overwrites and
//! insertions in a few places), put and get it again with the first get's cache, and count
//! the bytes moved over the artifact's size. A plain re-upload or re-download moves 100%.

use anyhow::Result;
use serde_json::json;

use super::artifact;
use super::site::{path_str, remove, Run, Site, NGINX_PORT};
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::{fmt_bytes, median};
use crate::bench::Context;

const SIZE: u64 = 100 << 20;
const FRACTION: f64 = 0.01;
const PLACES: usize = 6;
const KEY: &str = "bench/delta.bin";

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(3, 1);
    let site = Site::new(&[])?;
    let (v1, v2, out) = (
        site.path("v1.bin"),
        site.path("v2.bin"),
        site.path("out.bin"),
    );
    report.notes.push(format!(
        "A client and a mirror namespace joined by a veth pair, nginx in the mirror namespace, \
         no cap. Each round: a fresh {} of pseudo-random bytes (so compression plays no part; \
         `--compression none`) put to an empty mirror and got into an empty cache; then {:.0}% \
         of it rewritten in {PLACES} places at random (half overwrites, half insertions), put \
         again and got again with the same cache. Moved counts stored chunks and the manifest.",
        fmt_bytes(SIZE),
        FRACTION * 100.0
    ));
    let mut facts = Facts {
        title: format!(
            "Bytes moved for a {:.0}% edit of {}, over the artifact's size",
            FRACTION * 100.0,
            fmt_bytes(SIZE)
        ),
        headers: [
            "round",
            "first put",
            "first get",
            "put after the edit",
            "get after the edit",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let (mut put_shares, mut get_shares, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    // Requests to the mirror (nginx's access log) of the put and the get after the edit.
    let mut requests = Vec::new();
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        // A new store and caches each round; the old ones stay until the end, as deleting
        // thousands of files slows file creation on ext4 for a minute or more.
        let store = format!("store-{round}");
        let config = site.config("mirror", &site.store_url(NGINX_PORT, &store))?;
        let put_cache = site.path(&format!("put-cache-{round}"));
        let get_cache = site.path(&format!("get-cache-{round}"));
        artifact::random_file(&v1, SIZE, 100 + round as u64)?;
        let put = |file: &std::path::Path| {
            site.netwatch(
                &config,
                &[
                    "put",
                    path_str(file)?,
                    KEY,
                    "--compression",
                    "none",
                    "--cache",
                    path_str(&put_cache)?,
                ],
            )
        };
        let get = || {
            site.netwatch(
                &config,
                &[
                    "get",
                    KEY,
                    path_str(&out)?,
                    "--cache",
                    path_str(&get_cache)?,
                ],
            )
        };
        let (put1, get1) = (put(&v1)?, get()?);
        let edit = artifact::edit(&v1, &v2, FRACTION, PLACES, round as u64)?;
        let mark = site.nginx.requests().len();
        let put2 = put(&v2)?;
        let middle = site.nginx.requests().len();
        let get2 = get()?;
        let after = site.nginx.requests().len();
        requests.push((middle - mark, after - middle));
        if std::fs::read(&out)? != std::fs::read(&v2)? {
            anyhow::bail!("round {round}: the edited artifact came back different");
        }
        remove(&out)?;
        put_shares.push(share(&put2)?);
        get_shares.push(share(&get2)?);
        facts.rows.push(vec![
            round.to_string(),
            cell(&put1)?,
            cell(&get1)?,
            cell(&put2)?,
            cell(&get2)?,
        ]);
        raw.push(json!({"round": round, "edit": {"places": edit.places, "overwritten_bytes": edit.overwritten,
                                 "inserted_bytes": edit.inserted},
                        "put1": put1.summary, "get1": get1.summary,
                        "put2": put2.summary, "get2": get2.summary}));
    }
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}%", v * 100.0));
    facts.rows.push(vec![
        "median".into(),
        String::new(),
        String::new(),
        pct(median(&put_shares)),
        pct(median(&get_shares)),
    ]);
    report.facts.push(facts);
    let most_puts = requests.iter().map(|r| r.0).max().unwrap_or(0);
    report.facts.push(Facts {
        title: "Requests to the mirror after the edit (nginx's access log), most in a round".into(),
        headers: vec!["put".into(), "get".into()],
        rows: vec![vec![
            most_puts.to_string(),
            requests.iter().map(|r| r.1).max().unwrap_or(0).to_string(),
        ]],
    });
    report.targets.push(Target::value_below(
        "requests of the put after a 1% edit",
        "<= 16",
        Some(most_puts as f64),
        16.5,
        "",
    ));
    report.raw = json!({"artifact_bytes": SIZE, "rounds": raw, "requests_after_edit": requests});
    Ok(())
}

/// Bytes moved over the artifact's size.
fn share(run: &Run) -> Result<f64> {
    Ok(run.u64("bytes_moved")? as f64 / run.u64("artifact_bytes")? as f64)
}

/// "1.43% (14 of 1275 chunks)".
fn cell(run: &Run) -> Result<String> {
    Ok(format!(
        "{:.2}% ({} of {} chunks)",
        share(run)? * 100.0,
        run.u64("chunks_moved")?,
        run.u64("chunks")?
    ))
}
