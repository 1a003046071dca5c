//! The scenarios, in the order they run. Each builds its own namespaces and agent, and tears
//! them down when it returns (or unwinds). To add one, implement [`Scenario`] and list it in
//! [`all`].

mod build;
mod churn;
mod flow;
mod link;
mod outage;
mod overhead;
mod soak;
mod storm;
mod transfer;
mod truth;
mod xdp_cost;

use std::time::Duration;

use crate::netns::NetNs;
use anyhow::{bail, Result};

use super::report::{Row, ScenarioReport, Target};
use super::stats::{fmt_ns, Summary};
use super::Context;
use crate::clock::now_ns;

/// One benchmark scenario.
pub trait Scenario {
    /// The name `--scenario` selects it by, and its files are named after.
    fn name(&self) -> &'static str;
    /// What it measures, for people.
    fn title(&self) -> &'static str;
    /// Runs every round, filling `report` as it goes, so that what was measured before an
    /// error is kept.
    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()>;
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(link::LinkScenario::AdminDown),
        Box::new(link::LinkScenario::CarrierLoss),
        Box::new(link::LinkScenario::CarrierLossShared),
        Box::new(flow::FlowScenario::Blackhole),
        Box::new(flow::FlowScenario::Loss(5)),
        Box::new(flow::FlowScenario::Loss(20)),
        Box::new(storm::Storm {
            shared_index: false,
        }),
        Box::new(storm::Storm { shared_index: true }),
        Box::new(churn::Churn),
        Box::new(truth::Truth),
        Box::new(soak::Soak),
        Box::new(outage::Outage),
        Box::new(overhead::Overhead),
        Box::new(transfer::TransferScenario::Throughput),
        Box::new(transfer::TransferScenario::Parallel),
        Box::new(transfer::TransferScenario::Compression),
        Box::new(transfer::TransferScenario::Delta),
        Box::new(transfer::TransferScenario::Rtt),
        Box::new(transfer::TransferScenario::S3),
        Box::new(transfer::TransferScenario::Azure),
        Box::new(transfer::TransferScenario::Gcs),
        Box::new(transfer::TransferScenario::Sftp),
        Box::new(transfer::TransferScenario::Outage),
        Box::new(build::BuildScenario),
    ]
}

/// Method names, the same in every table.
pub const NETWATCH: &str = "netwatch, at a socket subscriber";
pub const NETWATCH_SINCE: &str = "netwatch verdict time (agent's since_ns)";
pub const RAW: &str = "raw rtnetlink event";
pub const SYSFS_100MS: &str = "sysfs operstate+carrier, 100 ms poll";
pub const SYSFS_1S: &str = "sysfs operstate+carrier, 1 s poll";
pub const SNMP: &str = "/proc/net/snmp RetransSegs, 1 s poll";
pub const PROBE: &str = "TCP connect probe, every 10 s, 3 s timeout";

/// Latency of an observation at `at` for a fault injected at `t0`.
pub fn after(t0: i64, seen: Option<i64>) -> Option<i64> {
    seen.map(|at| at - t0)
}

/// Loads `ruleset` into `ns` with `nft -f -`; returns CLOCK_MONOTONIC before nft started and
/// after it exited: the rule took effect in between.
pub fn nft(ns: &NetNs, ruleset: &str) -> Result<(i64, i64)> {
    let before = now_ns();
    let output = ns.exec_with_stdin("nft", &["-f", "-"], Some(ruleset));
    let after = now_ns();
    if !output.status.success() {
        bail!(
            "nft in {} refused:\n{ruleset}\n{}",
            ns.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((before, after))
}

/// How a p99 target names its figure: "p99", or "max" when too few rounds give no p99.
fn p99_name(what: &str, summary: Option<Summary>) -> String {
    match summary {
        Some(s) if !s.has_p99() => format!("{what} max of {} rounds (no p99 below 100)", s.n),
        _ => format!("{what} p99"),
    }
}

/// "p99 under `limit`" for `row`.
pub fn p99_below(row: &Row, what: &str, goal: &str, limit: Duration) -> Target {
    let summary = row.summary();
    Target::below(
        &p99_name(what, summary),
        goal,
        summary.map(|s| s.p99),
        limit.as_nanos() as i64,
    )
}

/// "p50 under `limit`" for `row`.
pub fn p50_below(row: &Row, what: &str, goal: &str, limit: Duration) -> Target {
    Target::below(
        &format!("{what} p50"),
        goal,
        row.summary().map(|s| s.p50),
        limit.as_nanos() as i64,
    )
}

/// "p50 at least `factor` times sooner than `baseline`'s p50".
pub fn p50_sooner(row: &Row, baseline: Option<&Row>, what: &str, factor: f64) -> Target {
    let ours = row.summary().map(|s| s.p50);
    let theirs = baseline.and_then(Row::summary).map(|s| s.p50);
    let ratio = match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours > 0 => Some(theirs as f64 / ours as f64),
        _ => None,
    };
    let base = theirs.map_or_else(|| "none".to_string(), fmt_ns);
    Target::at_least(
        &format!(
            "{what} p50, times sooner than the {} p50 ({base})",
            baseline.map_or("baseline", |b| b.method.as_str())
        ),
        &format!(">= {factor:.0}x sooner"),
        ratio,
        factor,
        "x",
    )
}
