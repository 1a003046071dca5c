//! The agent under test: its process (started in a namespace with the bench's flags, stopped
//! on drop), a subscriber to its socket that stamps each change on arrival, its metrics, and
//! what it costs (/proc/PID).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use netwatch_client::state::{Health, NetworkState, Subject};
use netwatch_client::Client;
use netwatch_tests::netns::{block_on_here, NetNs};

use super::clock::now_ns;
use super::history::History;

/// Environment variable naming the agent binary (`cargo xtask bench` sets it).
pub const NETWATCH_BIN: &str = "NETWATCH_BIN";

/// How the agent is started.
pub struct AgentOptions<'a> {
    /// TOML for `--config`, if any.
    pub config: Option<&'a str>,
    /// `--metrics ADDR` inside the namespace (its loopback must be up), else `off`.
    pub metrics: Option<SocketAddr>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// `netwatch agent --netns NS --report-interval 0 ...`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct AgentProc {
    child: Child,
    socket: PathBuf,
    _config: Option<tempfile::NamedTempFile>,
}

impl AgentProc {
    pub fn start(ns: &NetNs, options: AgentOptions<'_>) -> Result<Self> {
        Self::start_binary(&binary()?, ns, options)
    }

    /// Like [`AgentProc::start`], with another agent binary (an older build, to compare).
    pub fn start_binary(bin: &Path, ns: &NetNs, options: AgentOptions<'_>) -> Result<Self> {
        let socket = PathBuf::from(format!("/run/netwatch/netns-{}.sock", ns.name()));
        let config = match options.config {
            Some(text) => {
                let mut file = tempfile::Builder::new()
                    .prefix("nwbench-config-")
                    .suffix(".toml")
                    .tempfile()
                    .context("creating the agent's config file")?;
                file.write_all(text.as_bytes())?;
                file.flush()?;
                Some(file)
            }
            None => None,
        };
        let log = std::fs::File::create(&options.log)
            .with_context(|| format!("creating {}", options.log.display()))?;
        let mut command = Command::new(bin);
        command
            .args(["agent", "--netns", ns.name(), "--report-interval", "0"])
            .args(["--log-format", "json", "--socket"])
            .arg(&socket)
            .arg("--metrics")
            .arg(
                options
                    .metrics
                    .map_or_else(|| "off".to_string(), |a| a.to_string()),
            );
        if let Some(file) = &config {
            command.arg("--config").arg(file.path());
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut agent = AgentProc {
            child,
            socket,
            _config: config,
        };
        agent.wait_ready(Duration::from_secs(30), &options.log)?;
        Ok(agent)
    }

    fn wait_ready(&mut self, limit: Duration, log: &Path) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the agent exited ({status}) before serving its socket; its log, {}:\n{}",
                    log.display(),
                    tail(log)
                );
            }
            let socket = self.socket.clone();
            let got = block_on_here(async move {
                let mut client = Client::connect(&socket).await.ok()?;
                client.get().await.ok()
            });
            if got.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent did not serve {} within {limit:?}",
                    self.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state now, by a one-off `get`.
    pub fn get(&self) -> Result<NetworkState> {
        let socket = self.socket.clone();
        block_on_here(async move { Ok(Client::connect(&socket).await?.get().await?) })
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory preconditions; the child is not reaped, so the pid is ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os(NETWATCH_BIN).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/netwatch"),
        PathBuf::from,
    );
    if !path.is_file() {
        bail!(
            "the agent binary {} does not exist: run the bench through `cargo xtask bench`, or \
             set {NETWATCH_BIN}",
            path.display()
        );
    }
    Ok(path)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One state as the subscriber received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The subjects whose health changed (empty for the first state).
    pub subjects: Vec<Subject>,
    pub state: NetworkState,
}

impl Seen {
    pub fn health(&self, subject: &Subject) -> Option<Health> {
        self.state.verdict(subject).map(|v| v.health)
    }

    /// When `subject`'s health last changed, by the agent's CLOCK_MONOTONIC.
    pub fn since_ns(&self, subject: &Subject) -> Option<i64> {
        self.state.verdict(subject).map(|v| v.since_ns as i64)
    }

    pub fn reasons(&self, subject: &Subject) -> String {
        self.state
            .verdict(subject)
            .map(|v| v.reasons.join("; "))
            .unwrap_or_default()
    }
}

/// A subscription to the agent's socket, read by a thread of its own: each `change` line is
/// stamped when the client has it, the latency a consumer gets.
pub struct Subscriber {
    pub seen: History<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    pub fn start(socket: &Path) -> Result<Self> {
        let seen = History::new();
        let history = seen.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let path = socket.to_path_buf();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || {
                block_on_here(async move {
                    let subscribed = async { Client::connect(&path).await?.changes().await };
                    let (first, mut changes) = match subscribed.await {
                        Ok(pair) => pair,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    history.push(
                        now_ns(),
                        Seen {
                            subjects: Vec::new(),
                            state: first.state,
                        },
                    );
                    let _ = ready_tx.send(Ok(()));
                    while !stopping.load(Ordering::Relaxed) {
                        // `next` is cancel-safe: a timeout only lets the stop flag be seen.
                        match tokio::time::timeout(Duration::from_millis(100), changes.next()).await
                        {
                            Err(_) => {}
                            Ok(Ok(Some(change))) => history.push(
                                now_ns(),
                                Seen {
                                    subjects: change.subjects,
                                    state: change.state,
                                },
                            ),
                            Ok(Ok(None) | Err(_)) => break,
                        }
                    }
                    history.close();
                });
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => Ok(Subscriber {
                seen,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => bail!("subscribing to {}: {e}", socket.display()),
            Err(_) => bail!(
                "subscribing to {}: no first state within 15 s",
                socket.display()
            ),
        }
    }

    /// Waits until the latest state has `subject` at `health` (at once if it already is).
    pub fn wait_health(&self, subject: &Subject, health: Health, limit: Duration) -> bool {
        let from = self.seen.last().map_or(0, |(at, _)| at);
        self.seen
            .wait_first(from, Instant::now() + limit, |_, s| {
                s.health(subject) == Some(health)
            })
            .is_some()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
