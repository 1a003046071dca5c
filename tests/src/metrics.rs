//! The agent's Prometheus metrics, as a scraper sees them: fetched inside the agent's
//! namespace, and read by name and labels.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::netns::NetNs;

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

/// Where `cargo xtask test` tells the tests `promtool` is.
pub const NETWATCH_PROMTOOL: &str = "NETWATCH_PROMTOOL";
const PROMTOOL_INSTALLED: &str = "target/test-tools/prometheus/usr/bin/promtool";

/// Where `promtool` is: `NETWATCH_PROMTOOL`, else where `cargo xtask test` unpacks it.
pub fn promtool() -> Result<PathBuf> {
    let promtool = std::env::var_os(NETWATCH_PROMTOOL)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(PROMTOOL_INSTALLED)
        });
    anyhow::ensure!(
        promtool.is_file(),
        "promtool is not at {}: `cargo xtask test` unpacks it from Debian's prometheus \
         package, or set {NETWATCH_PROMTOOL} to one",
        promtool.display()
    );
    Ok(promtool)
}

/// The Prometheus server unpacked beside `promtool` (the same Debian package).
pub fn prometheus() -> Result<PathBuf> {
    let promtool = promtool()?;
    let server = promtool.with_file_name("prometheus");
    anyhow::ensure!(
        server.is_file(),
        "prometheus is not beside promtool at {}",
        promtool.display()
    );
    Ok(server)
}

/// What `promtool check metrics` says of `text`: `Ok` with its complaints (empty when
/// clean), or an error if it could not run.
pub fn promtool_check(text: &str) -> Result<String> {
    let promtool = promtool()?;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", promtool.display()))?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(said)
    } else {
        Ok(format!("exit {}: {said}", out.status))
    }
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
