//! A far mirror: put and get through a link capped at 100 Mbit/s with 50 ms of round-trip
//! time, against the time the bytes alone need at that rate. The cap is tbf on both veth
//! ends; the delay a userspace delay line in front of nginx (this kernel has no netem).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::delay::DelayProxy;
use super::site::{path_str, remove, Site, NGINX_PORT};
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::{fmt_bytes, median};
use crate::bench::Context;

const KEY: &str = "bench/far.bin";
const MBIT: u64 = 100;
const ONE_WAY: Duration = Duration::from_millis(25);
const PROXY_PORT: u16 = 8081;
/// The most a transfer may take, over the time its bytes alone need at the cap.
const WORST: f64 = 1.2;

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(2, 1);
    let size: u64 = if cx.options.quick {
        64 << 20
    } else {
        512 << 20
    };
    let site = Site::new(&["curl"])?;
    let source = site.path("far.bin");
    super::artifact::random_file(&source, size, 7)?;
    let mirror_ip = IpAddr::V4(site.pair.b_v4);
    let _delay = DelayProxy::start(
        site.mirror(),
        SocketAddr::new(mirror_ip, PROXY_PORT),
        SocketAddr::new(mirror_ip, NGINX_PORT),
        ONE_WAY,
    )?;
    site.shape(MBIT)?;
    // The delay line, checked: a small object's first byte comes a round trip late.
    let tiny = site.path("tiny.bin");
    super::artifact::random_file(&tiny, 1024, 8)?;
    site.place_plain(&tiny, "tiny.bin")?;
    let url = site.plain_url(PROXY_PORT, "tiny.bin");
    let (_, first_byte) = site.timed(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer}",
            &url,
        ],
    )?;
    let first_byte_ms = String::from_utf8_lossy(&first_byte).trim().parse::<f64>()? * 1e3;
    if first_byte_ms < 2.0 * ONE_WAY.as_secs_f64() * 1e3 * 0.9 {
        anyhow::bail!("the delay line adds too little: a first byte after {first_byte_ms:.1} ms");
    }
    // What the payload alone needs at the cap: the floor no client can beat.
    let bytes_alone = size as f64 * 8.0 / (MBIT as f64 * 1e6);
    report.notes.push(format!(
        "A client and a mirror namespace joined by a veth pair, both ends shaped to {MBIT} \
         Mbit/s by tbf; nginx behind a delay line adding {} ms each way ({} ms round trip). \
         A small object's first byte came after {first_byte_ms:.1} ms (curl). {} of \
         pseudo-random bytes, put with `--compression none` into a new store and got into a \
         new cache each round. The ratio is the transfer's wall time over the time \
         its bytes alone need at the cap ({bytes_alone:.1} s). Requests are nginx's access \
         log.",
        ONE_WAY.as_millis(),
        2 * ONE_WAY.as_millis(),
        fmt_bytes(size),
    ));
    let mut facts = Facts {
        title: format!(
            "{} at {MBIT} Mbit/s and {} ms round trip",
            fmt_bytes(size),
            2 * ONE_WAY.as_millis()
        ),
        headers: ["round", "put", "get", "put requests", "get requests"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    let (mut puts, mut gets, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let out = site.path("far.out");
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        let config = site.config(
            "far",
            &site.store_url(PROXY_PORT, &format!("store-{round}")),
        )?;
        let (put_cache, get_cache) = (
            site.path(&format!("put-cache-{round}")),
            site.path(&format!("get-cache-{round}")),
        );
        let mark = site.nginx.requests().len();
        let put = site.netwatch(
            &config,
            &[
                "put",
                path_str(&source)?,
                KEY,
                "--compression",
                "none",
                "--cache",
                path_str(&put_cache)?,
            ],
        )?;
        let middle = site.nginx.requests().len();
        let get = site.netwatch(
            &config,
            &[
                "get",
                KEY,
                path_str(&out)?,
                "--cache",
                path_str(&get_cache)?,
            ],
        )?;
        let after = site.nginx.requests().len();
        if std::fs::read(&out)? != std::fs::read(&source)? {
            anyhow::bail!("round {round}: the far get came back different");
        }
        remove(&out)?;
        let (p, g) = (
            put.wall.as_secs_f64() / bytes_alone,
            get.wall.as_secs_f64() / bytes_alone,
        );
        puts.push(p);
        gets.push(g);
        facts.rows.push(vec![
            round.to_string(),
            format!("{:.1} s ({p:.2}x)", put.wall.as_secs_f64()),
            format!("{:.1} s ({g:.2}x)", get.wall.as_secs_f64()),
            (middle - mark).to_string(),
            (after - middle).to_string(),
        ]);
        raw.push(
            json!({"round": round, "put_s": put.wall.as_secs_f64(), "get_s": get.wall.as_secs_f64(),
                        "put_requests": middle - mark, "get_requests": after - middle}),
        );
    }
    report.facts.push(facts);
    for (what, ratios) in [("put", &puts), ("get", &gets)] {
        report.targets.push(Target::value_below(
            &format!(
                "{what} of {} at {MBIT} Mbit/s, {} ms RTT, over the bytes' own time (median)",
                fmt_bytes(size),
                2 * ONE_WAY.as_millis()
            ),
            &format!("<= {WORST}"),
            median(ratios),
            WORST + 1e-9,
            "x",
        ));
    }
    report.raw = json!({"artifact_bytes": size, "bytes_alone_s": bytes_alone,
                        "first_byte_ms": first_byte_ms, "rounds": raw});
    Ok(())
}
