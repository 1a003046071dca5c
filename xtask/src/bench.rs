//! `cargo xtask bench`: build the agent and the bench in release mode as the calling user, then
//! run the bench as root. It makes and removes its own namespaces and writes
//! `bench-results/<YYYY-MM-DD>/` (dated in UTC; `-quick` for a smoke run, `-2`, `-3`... rather
//! than overwrite an earlier report).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{cmd, test_tools, test_tools::NETWATCH_BIN, toolchain};

#[derive(Args)]
pub struct BenchArgs {
    /// A smoke run: 3-5 rounds per scenario and short overhead runs (a few minutes). No p99.
    #[arg(long)]
    pub quick: bool,

    /// Rounds per scenario, instead of the defaults (100 for link events, 10 for faults on a
    /// flow, 2 flap storms, 15 throughput pairs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,

    /// Run only these scenarios (comma-separated; `cargo xtask bench --scenario list` shows
    /// them).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,

    /// The build scenario's network profiles (comma-separated: datacenter, wan, satellite,
    /// mobile; each one's rate, delay and loss are in docs/build-cache.md). [default: all]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    toolchain::ensure()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "netwatch", "--bin", "netwatch"]))
        .context("building the agent")?;
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "netwatch-tests",
        "--bin",
        "netwatch-bench",
    ]))
    .context("building the bench")?;
    let release = cmd::target_dir().join("release");
    let bench = release.join("netwatch-bench");
    if args.scenario.as_deref() == Some("list") {
        return cmd::run(std::process::Command::new(&bench).arg("list"));
    }
    // The bench takes its date from here, so the report and its folder always agree.
    let date = civil_date(days_since_epoch());
    let out = results_dir(
        &cmd::workspace_root().join("bench-results"),
        &date,
        args.quick,
    );
    // Made as the calling user, so only the files the bench writes belong to root.
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tools = test_tools::ensure()?;
    let mut run = cmd::as_root(&bench)?;
    tools.pass_to(&mut run);
    run.env(NETWATCH_BIN, release.join("netwatch"))
        .current_dir(cmd::workspace_root())
        .arg("run")
        .arg("--out")
        .arg(&out)
        .args(["--date", &date]);
    if args.quick {
        run.arg("--quick");
    }
    if let Some(rounds) = args.rounds {
        run.args(["--rounds", &rounds.to_string()]);
    }
    if let Some(scenario) = &args.scenario {
        run.args(["--scenario", scenario]);
    }
    if let Some(profile) = &args.profile {
        run.args(["--profile", profile]);
    }
    cmd::run(&mut run).context("the bench failed")
}

/// `DIR/DATE` (`DATE-quick` for a smoke run), or the first `-2`, `-3`... that holds no report
/// yet: a run never overwrites an earlier one.
fn results_dir(dir: &Path, date: &str, quick: bool) -> PathBuf {
    let base = if quick {
        format!("{date}-quick")
    } else {
        date.to_string()
    };
    (1..)
        .map(|n| match n {
            1 => dir.join(&base),
            n => dir.join(format!("{base}-{n}")),
        })
        .find(|candidate| !candidate.join("report.md").exists())
        .expect("an unused name")
}

fn days_since_epoch() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    (secs / 86_400) as i64
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_are_filed_by_date() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(19_782), "2024-02-29");
        assert_eq!(super::civil_date(20_454), "2026-01-01");
    }

    #[test]
    fn a_run_never_overwrites_an_earlier_report() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            super::results_dir(&dir, "2026-01-01", false),
            dir.join("2026-01-01")
        );
        assert_eq!(
            super::results_dir(&dir, "2026-01-01", true),
            dir.join("2026-01-01-quick")
        );
        std::fs::create_dir_all(dir.join("2026-01-01")).expect("mkdir");
        std::fs::write(dir.join("2026-01-01/report.md"), "x").expect("write");
        assert_eq!(
            super::results_dir(&dir, "2026-01-01", false),
            dir.join("2026-01-01-2")
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
