//! The agent under test as the bench starts it (in a namespace, with the bench's flags, its
//! log kept with the results), its metrics, and what it costs (/proc/PID). The process and
//! the subscription to its verdicts are the tests' ([`crate::agent`], [`crate::verdicts`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::agent::{Agent, Launch};
use crate::netns::NetNs;

/// How the agent is started.
pub struct AgentOptions<'a> {
    /// TOML for `--config`, if any.
    pub config: Option<&'a str>,
    /// `--metrics ADDR` inside the namespace (its loopback must be up), else `off`.
    pub metrics: Option<SocketAddr>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// `netwatch agent --netns NS --report-interval 0 ...`, serving its socket.
pub fn start(ns: &NetNs, options: AgentOptions<'_>) -> Result<Agent> {
    start_binary(None, ns, options)
}

/// Like [`start`], with another agent binary (an older build, to compare).
pub fn start_binary(bin: Option<&Path>, ns: &NetNs, options: AgentOptions<'_>) -> Result<Agent> {
    let metrics = options
        .metrics
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let agent = Agent::launch(
        ns,
        &Launch {
            binary: bin,
            args: &["--metrics", &metrics],
            config: options.config,
            report_interval: "0",
            log_file: Some(&options.log),
            env: &[],
        },
    )?;
    agent.wait_ready(Duration::from_secs(30))?;
    Ok(agent)
}

/// A process's CPU time (user + system, in clock ticks) and resident memory (VmRSS, bytes).
pub fn usage(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .context("malformed /proc/PID/stat")?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next().context("no utime")?.parse()?;
    let stime: u64 = fields.next().context("no stime")?.parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok((utime + stime, rss_kb * 1024))
}

/// Clock ticks per second for [`usage`].
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}
