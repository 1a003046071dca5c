//! `netwatch-bench`: runs every scenario N times in namespaces it makes itself, measures
//! netwatch beside its baselines on the same events, and writes the report. Started as root
//! by `cargo xtask bench`; see [`usage`].

mod agent;
mod plot;
mod probe;
mod report;
mod scenarios;
mod snmp;
mod stats;
mod sysfs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use report::ScenarioReport;

fn usage() -> &'static str {
    "usage: netwatch-bench run --out DIR --date YYYY-MM-DD [--quick] [--rounds N] [--scenario NAME[,NAME...]] [--profile NAME[,NAME...]]\n\
     \x20      netwatch-bench list\n\
     \x20      netwatch-bench poll-sysfs DEV INTERVAL_MS LIMIT_S   (internal: the sysfs poller)\n\
     Run it through `cargo xtask bench`, which builds it and the agent and runs it as root."
}

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub out: PathBuf,
    /// The run's date, `YYYY-MM-DD`, as xtask named the results folder (`--date`).
    pub date: String,
    pub quick: bool,
    pub rounds: Option<usize>,
    pub scenarios: Vec<String>,
    /// The build scenario's network profiles (`--profile`); all when empty.
    pub profiles: Vec<String>,
}

fn parse_run(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--date" => options.date = value("--date")?,
            "--quick" => options.quick = true,
            "--rounds" => {
                let text = value("--rounds")?;
                let rounds: usize =
                    text.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--rounds {text}: expected a whole number above 0")
                    })?;
                options.rounds = Some(rounds);
            }
            "--scenario" => {
                let names = value("--scenario")?;
                options
                    .scenarios
                    .extend(names.split(',').filter(|n| !n.is_empty()).map(String::from));
            }
            "--profile" => {
                let names = value("--profile")?;
                options
                    .profiles
                    .extend(names.split(',').filter(|n| !n.is_empty()).map(String::from));
            }
            other => bail!("unexpected argument `{other}`\n{}", usage()),
        }
    }
    options.out = out.with_context(|| format!("--out DIR is required\n{}", usage()))?;
    if options.date.is_empty() {
        bail!("--date YYYY-MM-DD is required\n{}", usage());
    }
    Ok(options)
}

/// Set by SIGINT/SIGTERM: the running scenario stops at its next round and tears down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// What a scenario gets from the runner.
pub struct Context {
    pub options: Options,
    pub jitter: crate::random::Random,
    index: usize,
    total: usize,
    /// Whether progress lines overwrite each other (stderr is a terminal).
    overwrite: bool,
}

impl Context {
    /// Rounds for a scenario: `--rounds`, else `quick` under `--quick`, else `default`.
    pub fn rounds(&self, default: usize, quick: usize) -> usize {
        self.options
            .rounds
            .unwrap_or(if self.options.quick { quick } else { default })
    }

    /// "[3/9] carrier loss ... round 14/100" on stderr.
    pub fn progress(&self, title: &str, round: usize, rounds: usize) {
        let line = format!(
            "[{}/{}] {title}: round {round}/{rounds}",
            self.index, self.total
        );
        if self.overwrite {
            eprint!("\r\x1b[2K{line}");
            if round == rounds {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }

    /// Fails once a signal asked the bench to stop.
    pub fn check_interrupt(&self) -> Result<()> {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Where the agent of scenario `name` logs.
    pub fn agent_log(&self, name: &str) -> PathBuf {
        self.options.out.join(format!("agent-{name}.log"))
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("poll-sysfs") => sysfs::poll_main(&args[1..]),
        Some("list") => {
            for scenario in scenarios::all() {
                println!("{:32} {}", scenario.name(), scenario.title());
            }
            ExitCode::SUCCESS
        }
        Some("run") => match parse_run(&args[1..]).and_then(run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netwatch-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{}", usage());
            ExitCode::from(2)
        }
    }
}

fn run(options: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench needs root (namespaces, eBPF): run it with `cargo xtask bench`");
    }
    let all = scenarios::all();
    let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
    for wanted in &options.scenarios {
        if !names.contains(&wanted.as_str()) {
            bail!(
                "no scenario `{wanted}`: the scenarios are {}",
                names.join(", ")
            );
        }
    }
    let selected: Vec<_> = all
        .into_iter()
        .filter(|s| options.scenarios.is_empty() || options.scenarios.iter().any(|n| n == s.name()))
        .collect();
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mode = match (options.quick, options.rounds) {
        (_, Some(n)) => format!("{n} rounds per scenario (--rounds)"),
        (true, None) => "--quick (a smoke run: few rounds, no p99)".to_string(),
        (false, None) => "default rounds".to_string(),
    };
    let started = Instant::now();
    let load_before = loadavg();
    let mut cx = Context {
        options,
        jitter: crate::random::Random::from_clock(),
        index: 0,
        total: selected.len(),
        overwrite: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let mut reports = Vec::new();
    for scenario in &selected {
        cx.index += 1;
        eprintln!(
            "[{}/{}] {} ({})",
            cx.index,
            cx.total,
            scenario.title(),
            scenario.name()
        );
        let mut report = ScenarioReport {
            name: scenario.name().to_string(),
            title: scenario.title().to_string(),
            ..ScenarioReport::default()
        };
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scenario.run(&mut cx, &mut report)
        }));
        report.elapsed = began.elapsed();
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(panic) => Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".to_string()),
            ),
        };
        if let Some(error) = &error {
            eprintln!(
                "[{}/{}] {} failed: {error}",
                cx.index,
                cx.total,
                scenario.name()
            );
        }
        report.error = error;
        reports.push(report);
        if INTERRUPTED.load(Ordering::Relaxed) {
            eprintln!("interrupted: writing what was measured so far");
            break;
        }
    }
    let meta = report::Meta {
        date: cx.options.date.clone(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        agent: std::env::var(crate::agent::NETWATCH_BIN)
            .unwrap_or_else(|_| "target/release/netwatch".into()),
        mode,
        elapsed: started.elapsed(),
        load: (load_before, loadavg()),
    };
    let markdown = report::write(&cx.options.out, &meta, &reports)?;
    give_back(&cx.options.out);
    println!("{markdown}");
    eprintln!(
        "wrote {}/report.md, report.json and the plots in {:.1} min",
        cx.options.out.display(),
        meta.elapsed.as_secs_f64() / 60.0
    );
    if reports.iter().any(|r| r.error.is_some()) {
        bail!("some scenarios failed: see the report");
    }
    Ok(())
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// Under sudo, hands the results back to the user who asked for them.
fn give_back(dir: &std::path::Path) {
    let id = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else {
        return;
    };
    let paths = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .chain([dir.to_path_buf()]);
    for path in paths {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_options_parse_and_refuse_nonsense() {
        let options = parse_run(&args(&[
            "--out",
            "x",
            "--date",
            "2026-11-21",
            "--quick",
            "--rounds",
            "7",
            "--scenario",
            "a,b",
        ]))
        .expect("parses");
        assert_eq!(
            options,
            Options {
                out: "x".into(),
                date: "2026-11-21".into(),
                quick: true,
                rounds: Some(7),
                scenarios: vec!["a".into(), "b".into()],
                profiles: Vec::new(),
            }
        );
        assert!(parse_run(&args(&["--quick"])).is_err());
        assert!(
            parse_run(&args(&["--out", "x"])).is_err(),
            "the date is required"
        );
        let dated = |more: &[&str]| {
            let mut all = vec!["--out", "x", "--date", "2026-11-21"];
            all.extend_from_slice(more);
            args(&all)
        };
        assert!(parse_run(&dated(&["--rounds", "0"])).is_err());
        assert!(parse_run(&dated(&["--bogus"])).is_err());
    }

    #[test]
    fn scenario_names_are_unique() {
        let all = scenarios::all();
        let mut names: Vec<_> = all.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
