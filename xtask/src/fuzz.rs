//! `cargo xtask fuzz`: builds the libFuzzer targets in fuzz/ with coverage instrumentation
//! (stable Rust: no sanitizer, so a crash is a panic or an abort) and runs each for a bounded
//! time, starting from the committed seeds. Prints executions per target; a crash fails the
//! run and names the input to add to fuzz/regressions/.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{cmd, toolchain};

/// Every target, in fuzz/fuzz_targets/.
pub const TARGETS: &[&str] = &["protocol", "config", "manifest", "netlink"];

/// What cargo-fuzz passes to rustc for libFuzzer's coverage feedback, less the sanitizer.
const COVERAGE_FLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

#[derive(Args)]
pub struct FuzzArgs {
    /// How long to fuzz each target, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub seconds: u64,

    /// The targets to run (default: all of protocol, config, manifest, netlink).
    #[arg(value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

/// What one target's run gave.
struct Outcome {
    target: String,
    seconds: f64,
    executions: u64,
    corpus: usize,
    crash: Option<PathBuf>,
}

pub fn fuzz(args: FuzzArgs) -> Result<()> {
    toolchain::ensure()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    let binaries = build()?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_one(&binaries.join(target), target, args.seconds)?);
    }
    println!("\n| target | seconds | executions | per second | corpus | result |");
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} | {} |",
            o.target,
            o.seconds,
            o.executions,
            o.executions as f64 / o.seconds.max(0.001),
            o.corpus,
            o.crash.as_ref().map_or("no crash".to_string(), |p| format!(
                "CRASH: {}",
                p.display()
            ))
        );
    }
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if !crashed.is_empty() {
        bail!(
            "{} target(s) crashed: reproduce with the input named above (`{}/release/TARGET \
             INPUT`), fix, and add the input to fuzz/regressions/TARGET/ so the unit tests \
             keep it fixed",
            crashed.len(),
            fuzz_target_dir().join(host_triple()?).display()
        );
    }
    Ok(())
}

/// Builds every target; returns the directory holding the binaries.
fn build() -> Result<PathBuf> {
    let triple = host_triple()?;
    let mut build = cmd::cargo();
    build
        .current_dir(cmd::workspace_root().join("fuzz"))
        // An explicit --target keeps the flags off build scripts and proc macros.
        .args([
            "build",
            "--release",
            "--bins",
            "--locked",
            "--target",
            &triple,
        ])
        .env("RUSTFLAGS", COVERAGE_FLAGS)
        .env("CARGO_TARGET_DIR", fuzz_target_dir());
    cmd::run(&mut build).context("building the fuzz targets")?;
    Ok(fuzz_target_dir().join(triple).join("release"))
}

/// Runs one target for `seconds` on a working copy of its seeds.
fn run_one(binary: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let root = cmd::workspace_root().join("fuzz");
    let seeds = root.join("corpus").join(target);
    let regressions = root.join("regressions").join(target);
    let work = fuzz_target_dir().join("corpus").join(target);
    let artifacts = fuzz_target_dir().join("artifacts").join(target);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let mut command = Command::new(binary);
    command
        .arg(&work)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .arg("-rss_limit_mb=2048")
        .arg("-timeout=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if regressions.is_dir() {
        command.arg(&regressions);
    }
    eprintln!("> {}", cmd::display(&command));
    let started = Instant::now();
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let log = String::from_utf8_lossy(&output.stderr);
    let crash = (!output.status.success()).then(|| {
        eprintln!("{log}");
        crash_input(&log).unwrap_or(artifacts.clone())
    });
    let corpus = fs::read_dir(&work).map_or(0, |d| d.count());
    Ok(Outcome {
        target: target.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        executions: stat(&log, "stat::number_of_executed_units:").unwrap_or(0),
        corpus,
        crash,
    })
}

/// libFuzzer's final statistic `name`.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().parse().ok())
}

/// The input libFuzzer saved for a crash ("Test unit written to PATH").
fn crash_input(log: &str) -> Option<PathBuf> {
    log.lines()
        .find_map(|line| line.split("Test unit written to ").nth(1))
        .map(|path| PathBuf::from(path.trim()))
}

fn fuzz_target_dir() -> PathBuf {
    cmd::target_dir().join("fuzz")
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = cmd::probe(&rustc, &["-vV"]).context("running `rustc -vV`")?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` names no host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statistics_and_the_crash_input_are_read_from_the_log() {
        let log = "INFO: Seed: 1\n==1== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='a/'; Test unit written to a/crash-0123\n\
                   stat::number_of_executed_units: 123456\nstat::peak_rss_mb: 80\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(123_456));
        assert_eq!(crash_input(log), Some(PathBuf::from("a/crash-0123")));
        assert_eq!(crash_input("nothing"), None);
    }
}
