//! The agent under test as the bench starts it (in a namespace, with the bench's flags, its
//! log kept with the results), its metrics, and what it costs (/proc/PID). The process and
//! the subscription to its verdicts are the tests' ([`crate::agent`], [`crate::verdicts`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
        },
    )?;
    agent.wait_ready(Duration::from_secs(30))?;
    Ok(agent)
}

/// The agent's metrics text, fetched from `addr` inside `ns`.
pub fn scrape(ns: &NetNs, addr: SocketAddr) -> Result<String> {
    ns.run(move || -> Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .with_context(|| format!("connecting to the metrics at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text
            .split_once("\r\n\r\n")
            .map_or(text.clone(), |(_, body)| body.to_string()))
    })
}

/// The value of the sample `name{labels}` (labels exactly as written, `""` for none).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == key).then(|| value.parse().ok()).flatten()
        })
}

/// Every `program` label of a metric family.
pub fn programs(text: &str, family: &str) -> Vec<String> {
    let prefix = format!("{family}{{program=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_found_by_name_and_labels() {
        let text = "# HELP x y\nnetwatch_bpf_program_runs_total{program=\"netwatch_xdp\"} 42\n\
                    netwatch_bpf_program_runs_total{program=\"tcp_retransmit\"} 3\n\
                    netwatch_netlink_overruns_total 0\n";
        assert_eq!(
            metric(
                text,
                "netwatch_bpf_program_runs_total",
                "program=\"netwatch_xdp\""
            ),
            Some(42.0)
        );
        assert_eq!(
            metric(text, "netwatch_netlink_overruns_total", ""),
            Some(0.0)
        );
        assert_eq!(metric(text, "missing", ""), None);
        assert_eq!(
            programs(text, "netwatch_bpf_program_runs_total"),
            ["netwatch_xdp", "tcp_retransmit"]
        );
    }
}
