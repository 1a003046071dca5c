//! `netwatch get` and `put` against real servers and their usual baselines (docs/transfer.md):
//! throughput against curl (and S3, Azure, GCS and SFTP mirrors against their plain clients, with S3's request counts), the parallel chunk fetch under a per-connection cap against one
//! connection and aria2c, what compression `auto` chooses at 10, 100 and 1000 Mbit/s, what
//! a 1% edit moves, and a far mirror (100 Mbit/s, 50 ms away). Each part is its own scenario
//! with its own namespaces and nginx.

mod artifact;
mod backend;
mod compression;
pub(super) mod delay;
mod delta;
mod file_copy;
mod outage;
mod parallel;
pub(super) mod proxy;
mod rtt;
mod s3_requests;
mod site;
mod throughput;

use anyhow::Result;

use super::Scenario;
use crate::bench::report::ScenarioReport;
use crate::bench::stats::{fmt_bits_per_s, median};
use crate::bench::Context;

pub enum TransferScenario {
    Throughput,
    Parallel,
    Compression,
    Delta,
    Rtt,
    S3,
    Azure,
    Gcs,
    Sftp,
    Outage,
}

impl Scenario for TransferScenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Throughput => "transfer-throughput",
            Self::Parallel => "transfer-parallel",
            Self::Compression => "transfer-compression",
            Self::Delta => "transfer-delta",
            Self::Rtt => "transfer-rtt",
            Self::S3 => "transfer-s3",
            Self::Azure => "transfer-azure",
            Self::Gcs => "transfer-gcs",
            Self::Sftp => "transfer-sftp",
            Self::Outage => "transfer-outage",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Throughput => "transfer: netwatch get against curl, one mirror, no cap",
            Self::Parallel => {
                "transfer: parallel chunk fetch under a per-connection cap, against one \
                 connection and aria2c"
            }
            Self::Compression => "transfer: compression chosen against link rate (put)",
            Self::Delta => "transfer: what a 1% edit moves (put and get)",
            Self::Rtt => "transfer: a far mirror, 100 Mbit/s and 50 ms round trip (put and get)",
            Self::S3 => {
                "transfer: an S3 mirror (SeaweedFS) against curl on the same server, and its \
                 request counts"
            }
            Self::Azure => "transfer: an Azure mirror (Azurite) against curl on the same server",
            Self::Gcs => {
                "transfer: a GCS mirror (fake-gcs-server) against curl on the same JSON API"
            }
            Self::Sftp => "transfer: an SFTP mirror (OpenSSH) against sftp on the same server",
            Self::Outage => {
                "transfer: a long get from SFTP and Azure mirrors through a 30 s outage, \
                 network-aware against plain backoff"
            }
        }
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let title = self.title();
        match self {
            Self::Throughput => throughput::run(cx, report, title),
            Self::Parallel => parallel::run(cx, report, title),
            Self::Compression => compression::run(cx, report, title),
            Self::Delta => delta::run(cx, report, title),
            Self::Rtt => rtt::run(cx, report, title),
            Self::S3 => backend::run(cx, report, title, backend::Server::start_seaweed()),
            Self::Azure => backend::run(cx, report, title, backend::Server::start_azurite()),
            Self::Gcs => backend::run(cx, report, title, backend::Server::start_fake_gcs()),
            Self::Sftp => backend::run(cx, report, title, backend::Server::start_sshd()),
            Self::Outage => outage::run(cx, report, title),
        }
    }
}

/// The columns of [`spread_row`].
pub const SPREAD_HEADERS: [&str; 5] = ["method", "rounds", "min", "median", "max"];

/// A method's throughputs (bytes per second, one per round) as min, median and max. With
/// the few rounds a transfer bench affords, the max is the p95.
pub fn spread_row(method: &str, rates: &[f64]) -> Vec<String> {
    let cell = |rate: Option<f64>| rate.map_or_else(|| "–".to_string(), fmt_bits_per_s);
    let min = rates.iter().copied().reduce(f64::min);
    let max = rates.iter().copied().reduce(f64::max);
    vec![
        method.to_string(),
        rates.len().to_string(),
        cell(min),
        cell(median(rates)),
        cell(max),
    ]
}

/// The median of the per-round ratios `a[i] / b[i]`, and the ratios.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> (Option<f64>, Vec<f64>) {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    (median(&ratios), ratios)
}

/// The ratio of `a`'s fastest round to `b`'s: each tool when the machine got least in its
/// way. On a VM whose disk and memory stall for seconds at times, this says what the tools
/// do; the median of the paired ratios says what a user met.
pub fn best_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let best = |r: &[f64]| r.iter().copied().reduce(f64::max);
    Some(best(a)? / best(b)?)
}

/// "1.23x" or "–".
pub fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_string(), |r| format!("{r:.2}x"))
}
