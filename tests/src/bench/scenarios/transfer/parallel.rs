//! A per-connection cap: netwatch's parallel chunk fetch against itself on one connection,
//! against curl (one connection) and against `aria2c -x N -s N` on the same bytes. Two caps:
//! a proxy that paces every connection (the cap a shaping middlebox applies), and nginx's
//! own `limit_rate` (per request: see `proxy`), each on its own port of the same mirror.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::servers::nginx::Nginx;
use anyhow::Result;
use serde_json::json;

use super::proxy::CappedProxy;
use super::site::{check_size, path_str, remove, Site, NGINX_PORT};
use super::{artifact, paired_ratio, spread_row, times, SPREAD_HEADERS};
use crate::bench::report::{Facts, ScenarioReport, Table};
use crate::bench::stats::{fmt_bits_per_s, fmt_bytes};
use crate::bench::Context;

const KEY: &str = "bench/parallel.bin";
const STORE: &str = "store";
/// Chunks in flight, and aria2c's connections: netwatch's default.
const N: usize = 8;
/// Each connection's cap: 32 Mbit/s.
const RATE: u64 = 4_000_000;
const PROXY_PORT: u16 = 8080;
const LIMIT_RATE_PORT: u16 = 81;

#[derive(Clone, Copy)]
enum Method {
    Netwatch(usize),
    Curl,
    Aria2,
}

const METHODS: [Method; 4] = [
    Method::Netwatch(1),
    Method::Netwatch(N),
    Method::Curl,
    Method::Aria2,
];

impl Method {
    fn label(self) -> String {
        match self {
            Method::Netwatch(1) => "netwatch get, 1 chunk in flight".into(),
            Method::Netwatch(n) => format!("netwatch get, {n} chunks in flight"),
            Method::Curl => "curl (one connection)".into(),
            Method::Aria2 => format!("aria2c -x {N} -s {N} -k 1M"),
        }
    }
}

struct Cap {
    slug: &'static str,
    what: String,
    port: u16,
}

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    let rounds = cx.rounds(5, 1);
    let size: u64 = if cx.options.quick { 32 << 20 } else { 64 << 20 };
    let site = Site::new(&["curl", "aria2c"])?;
    let source = site.path("parallel.bin");
    artifact::random_file(&source, size, 2)?;
    site.place_plain(&source, "parallel.bin")?;
    let put_config = site.config("mirror", &site.store_url(NGINX_PORT, STORE))?;
    site.put_raw(&put_config, &source, KEY)?;
    let mirror_ip = IpAddr::V4(site.pair.b_v4);
    let _proxy = CappedProxy::start(
        site.mirror(),
        SocketAddr::new(mirror_ip, PROXY_PORT),
        SocketAddr::new(mirror_ip, NGINX_PORT),
        RATE,
    )?;
    let _limited = Nginx::start(
        Some(site.mirror()),
        SocketAddr::new(mirror_ip, LIMIT_RATE_PORT),
        site.nginx.root(),
        Some(RATE),
    );
    let rate = fmt_bits_per_s(RATE as f64);
    report.notes.push(format!(
        "A client and a mirror namespace joined by a veth pair; {} of pseudo-random bytes, put \
         once with `--compression none` and also stored as one plain file for curl and aria2c. \
         Each connection is capped at {rate}, two ways: (1) a pacing TCP proxy in front of \
         nginx that holds every connection to the rate across keep-alive requests; (2) nginx's \
         `limit_rate {RATE}`, which is per request and sends the first second's worth of each \
         response unthrottled (ngx_http_write_filter_module.c), so chunk requests smaller than \
         {} escape it. Each round runs the four methods in rotated order; netwatch's cache is \
         new each time (the old ones are kept until the end: deleting thousands of files slows \
         file creation on ext4 for a minute or more). Times are wall clock from process start to exit.",
        fmt_bytes(size),
        fmt_bytes(RATE),
    ));
    let caps = [
        Cap {
            slug: "proxy",
            what: format!("a pacing proxy, {rate} per connection"),
            port: PROXY_PORT,
        },
        Cap {
            slug: "limit-rate",
            what: format!("nginx limit_rate, {rate} per request"),
            port: LIMIT_RATE_PORT,
        },
    ];
    let mut raw = Vec::new();
    for (c, cap) in caps.iter().enumerate() {
        let config = site.config(cap.slug, &site.store_url(cap.port, STORE))?;
        let labels: Vec<String> = METHODS.iter().map(|m| m.label()).collect();
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut table = Table::new(
            cap.slug,
            &format!("Time to fetch {} through {}", fmt_bytes(size), cap.what),
            &label_refs,
        );
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
        for round in 1..=rounds {
            cx.check_interrupt()?;
            cx.progress(title, c * rounds + round, caps.len() * rounds);
            let mut walls = json!({"cap": cap.slug, "round": round});
            for k in 0..METHODS.len() {
                let m = (k + round) % METHODS.len();
                let cache = site.path(&format!("get-cache-{}-{round}-{m}", cap.slug));
                let wall = fetch(&site, &config, cap.port, METHODS[m], size, &cache)?;
                table.record(&labels[m], Some(wall.as_nanos() as i64));
                rates[m].push(size as f64 / wall.as_secs_f64());
                walls[labels[m].as_str()] = json!(wall.as_secs_f64());
            }
            raw.push(walls);
        }
        let (speedup, _) = paired_ratio(&rates[1], &rates[0]);
        let (against_aria2, _) = paired_ratio(&rates[1], &rates[3]);
        let (one_against_curl, _) = paired_ratio(&rates[0], &rates[2]);
        let (aria2_against_curl, _) = paired_ratio(&rates[3], &rates[2]);
        let mut rows: Vec<Vec<String>> = labels
            .iter()
            .zip(&rates)
            .map(|(label, r)| spread_row(label, r))
            .collect();
        let derived = [
            (format!("speed-up: {N} chunks in flight / 1"), speedup),
            (format!("netwatch, {N} in flight / aria2c"), against_aria2),
            ("netwatch, 1 in flight / curl".to_string(), one_against_curl),
            ("aria2c / curl".to_string(), aria2_against_curl),
        ];
        for (what, ratio) in derived {
            rows.push(vec![
                format!("{what} (median of the rounds' ratios)"),
                rounds.to_string(),
                String::new(),
                times(ratio),
                String::new(),
            ]);
        }
        report.facts.push(Facts {
            title: format!("Throughput through {}", cap.what),
            headers: SPREAD_HEADERS.iter().map(|h| h.to_string()).collect(),
            rows,
        });
        report.tables.push(table);
    }
    report.raw = json!({"artifact_bytes": size, "cap_bytes_per_sec": RATE, "rounds": raw});
    Ok(())
}

/// One full fetch by `method` through `port`; checks the size of what it wrote.
fn fetch(
    site: &Site,
    config: &std::path::Path,
    port: u16,
    method: Method,
    size: u64,
    cache: &std::path::Path,
) -> Result<Duration> {
    let out = site.path("out.bin");
    let url = site.plain_url(port, "parallel.bin");
    let wall = match method {
        Method::Netwatch(n) => {
            let n = n.to_string();
            let run = site.netwatch(
                config,
                &[
                    "get",
                    KEY,
                    path_str(&out)?,
                    "--cache",
                    path_str(cache)?,
                    "--concurrency",
                    &n,
                ],
            )?;
            run.wall
        }
        Method::Curl => {
            site.timed("curl", &["-sS", "--fail", "-o", path_str(&out)?, &url])?
                .0
        }
        Method::Aria2 => {
            let n = N.to_string();
            let dir = path_str(site.dir.path())?;
            site.timed(
                "aria2c",
                &[
                    "--no-conf",
                    "-q",
                    "-x",
                    &n,
                    "-s",
                    &n,
                    "-k",
                    "1M",
                    "--file-allocation=none",
                    "--allow-overwrite=true",
                    "--auto-file-renaming=false",
                    "-d",
                    dir,
                    "-o",
                    "out.bin",
                    &url,
                ],
            )?
            .0
        }
    };
    check_size(&out, size, &method.label())?;
    remove(&out)?;
    Ok(wall)
}
