//! `Agent`: the `netwatch agent` binary run against a test namespace, and its JSON log lines;
//! for the tests and the bench.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use netwatch_client::{state::NetworkState, Client};
use serde_json::Value;

use crate::netns::{block_on_here, NetNs};

/// Environment variable naming the agent binary to test.
pub const NETWATCH_BIN: &str = "NETWATCH_BIN";

/// Environment variable with the agent's log filter (its `RUST_LOG`) for debugging a test,
/// e.g. `debug`; `info` without it. Tests wait for info lines, so it can only add lines.
pub const AGENT_LOG: &str = "NWT_AGENT_LOG";

/// How many log lines a failure message shows.
const TAIL: usize = 30;

/// The log as read so far, and whether stderr has closed.
#[derive(Default)]
struct Log {
    lines: Vec<Value>,
    closed: bool,
}

type SharedLog = Arc<(Mutex<Log>, Condvar)>;

/// How an agent is started besides `--netns NAME --log-format json`.
pub struct Launch<'a> {
    /// The binary; `None`: [`binary`].
    pub binary: Option<&'a Path>,
    /// More flags.
    pub args: &'a [&'a str],
    /// TOML for `--config`, written to a temporary file (an empty one when `None`).
    pub config: Option<&'a str>,
    /// `--report-interval`: the tests wait for its lines; the bench turns it off (`0`).
    pub report_interval: &'a str,
    /// A file that gets every log line too (the bench keeps it with its results).
    pub log_file: Option<&'a Path>,
    /// More environment variables.
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Self {
            binary: None,
            args: &[],
            config: None,
            report_interval: "1s",
            log_file: None,
            env: &[],
        }
    }
}

/// A running `netwatch agent --netns NAME --log-format json`; killed (SIGKILL) on drop if
/// still running, and its socket file removed then.
pub struct Agent {
    child: Child,
    log: SharedLog,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
    socket: PathBuf,
    /// The configuration file, deleted with the agent.
    _config: Option<tempfile::NamedTempFile>,
}

impl Agent {
    /// Starts the agent on `ns` (the agent enters the namespace itself).
    pub fn start(ns: &NetNs) -> Self {
        Self::start_with(ns, &[], None)
    }

    /// Starts the agent on `ns` with more flags, and with `config` (TOML text) as its
    /// configuration file if given.
    pub fn start_with(ns: &NetNs, extra_args: &[&str], config: Option<&str>) -> Self {
        let launch = Launch {
            args: extra_args,
            config,
            ..Launch::default()
        };
        Self::launch(ns, &launch).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts the agent on `ns` as `launch` says; it does not wait for it to serve (see
    /// [`Agent::wait_ready`]).
    pub fn launch(ns: &NetNs, launch: &Launch<'_>) -> Result<Self> {
        let bin = match launch.binary {
            Some(bin) => bin.to_path_buf(),
            None => try_binary()?,
        };
        // Always a file of the test's own: without one the agent would read the machine's
        // /etc/netwatch.toml.
        let config = Some(write_config(launch.config.unwrap_or("")));
        let args = launch.args;
        let socket = args
            .iter()
            .position(|arg| *arg == "--socket")
            .and_then(|at| args.get(at + 1))
            .map_or_else(|| default_socket(ns), PathBuf::from);
        let mut copy = match launch.log_file {
            Some(path) => Some(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => None,
        };
        let mut command = Command::new(&bin);
        command
            .args(["agent", "--netns", ns.name(), "--log-format", "json"])
            .args(["--report-interval", launch.report_interval])
            .args(args);
        if let Some(file) = &config {
            command.arg("--config").arg(file.path());
        }
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var(AGENT_LOG).unwrap_or_else(|_| "info".into()),
            )
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log: SharedLog = Arc::default();
        let shared = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = &mut copy {
                    let _ = writeln!(file, "{line}");
                }
                // A line that is not JSON is kept as such, so a failure shows it.
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "level": "RAW" }));
                let (lock, ready) = &*shared;
                lock.lock().expect("log lock").lines.push(value);
                ready.notify_all();
            }
            let (lock, ready) = &*shared;
            lock.lock().expect("log lock").closed = true;
            ready.notify_all();
        });
        Ok(Agent {
            child,
            log,
            reader: Some(reader),
            status: None,
            socket,
            _config: config,
        })
    }

    /// Waits until the agent answers a `get` on its socket; fails, with its last log lines,
    /// if it exits first or does not answer within `limit`.
    pub fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log.0.lock().expect("log lock").closed {
                bail!(
                    "the agent exited before serving its socket; its last log lines:\n{}",
                    self.tail()
                );
            }
            if self.get().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent did not serve {} within {limit:?}; its last log lines:\n{}",
                    self.socket.display(),
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The state now, by a one-off `get`.
    pub fn get(&self) -> Result<NetworkState> {
        let socket = self.socket.clone();
        block_on_here(async move { Ok(Client::connect(&socket).await?.get().await?) })
    }

    /// The Unix socket the agent serves its verdict on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A copy of every log line read so far.
    pub fn lines_so_far(&self) -> Vec<Value> {
        self.log.0.lock().expect("log lock").lines.clone()
    }

    /// How many lines have been read so far: a mark for [`Agent::wait_for_after`].
    pub fn mark(&self) -> usize {
        self.log.0.lock().expect("log lock").lines.len()
    }

    /// Waits for a line with `message` for which `predicate` holds, searching the whole log.
    /// Panics with the last lines of the log on timeout or if the agent exits first.
    pub fn wait_for(
        &self,
        message: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        self.wait_for_after(0, message, predicate, timeout)
    }

    /// Like [`Agent::wait_for`], looking only at lines after `mark`.
    pub fn wait_for_after(
        &self,
        mark: usize,
        message: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.log;
        let mut log = lock.lock().expect("log lock");
        let mut next = mark;
        loop {
            if let Some(found) = log.lines[next.min(log.lines.len())..]
                .iter()
                .find(|line| line["message"] == message && predicate(line))
            {
                return found.clone();
            }
            next = log.lines.len().max(mark);
            let now = Instant::now();
            if log.closed || now >= deadline {
                let why = if log.closed {
                    "the agent closed its log (exited?)"
                } else {
                    "timed out"
                };
                panic!(
                    "waiting {timeout:?} for \"{message}\": {why}; last {TAIL} log lines:\n{}",
                    tail(&log.lines)
                );
            }
            log = ready.wait_timeout(log, deadline - now).expect("log lock").0;
        }
    }

    /// The last log lines, one per line, for failure messages.
    pub fn tail(&self) -> String {
        tail(&self.log.0.lock().expect("log lock").lines)
    }

    /// Sends SIGTERM and waits (at most 10 s) for the agent to exit and its log to close.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(10))
    }

    /// Sends SIGKILL and waits for the agent to exit and its log to close.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10))
    }

    fn signal(&self, signal: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: kill has no memory preconditions; the child is not reaped yet, so its pid is
        // still ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert!(
            rc == 0,
            "kill({}, {signal}): {}",
            self.child.id(),
            std::io::Error::last_os_error()
        );
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait().expect("wait for the agent") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "the agent did not exit within {limit:?}; last {TAIL} log lines:\n{}",
                        self.tail()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.status = Some(status);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A killed agent cannot remove its socket; the next agent would clean it up, but
        // namespaces are never reused, so nothing else would.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The socket an agent started with `--netns NAME` and no `--socket` serves.
pub fn default_socket(ns: &NetNs) -> PathBuf {
    PathBuf::from(format!("/run/netwatch/netns-{}.sock", ns.name()))
}

/// Writes `text` to a temporary `.toml` file, deleted when the returned guard drops.
pub fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("nwt-config-")
        .suffix(".toml")
        .tempfile()
        .unwrap_or_else(|e| panic!("creating a temporary config file: {e}"));
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .unwrap_or_else(|e| panic!("writing {}: {e}", file.path().display()));
    file
}

/// Whether a log line is a WARN or ERROR line.
pub fn is_problem(line: &Value) -> bool {
    matches!(line["level"].as_str(), Some("WARN" | "ERROR"))
}

/// A predicate for [`Agent::wait_for`]: the line is about link `index`.
pub fn on_link(index: u32) -> impl Fn(&Value) -> bool {
    move |line| line["ifindex"].as_u64() == Some(u64::from(index))
}

/// A field of a log line as u64 (tracing's JSON writes integers as numbers; strings are
/// accepted too in case a field is recorded with Display).
pub fn field_u64(line: &Value, field: &str) -> u64 {
    match &line[field] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("log line has no integer field `{field}`: {line}"))
}

/// A field of a log line as a string.
pub fn field_str<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field]
        .as_str()
        .unwrap_or_else(|| panic!("log line has no string field `{field}`: {line}"))
}

fn tail(lines: &[Value]) -> String {
    let start = lines.len().saturating_sub(TAIL);
    lines[start..]
        .iter()
        .map(|line| line.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`try_binary`], or a panic saying why not.
pub fn binary() -> PathBuf {
    try_binary().unwrap_or_else(|e| panic!("{e:#}"))
}

/// `$NETWATCH_BIN` (`cargo xtask test` and `bench` set it), else the workspace's
/// `target/debug/netwatch`.
pub fn try_binary() -> Result<PathBuf> {
    let path = std::env::var_os(NETWATCH_BIN)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/netwatch")
        });
    if !path.is_file() {
        bail!(
            "the netwatch binary {} does not exist: run through `cargo xtask test` or `cargo \
             xtask bench`, build it with `cargo build -p netwatch --bin netwatch`, or set \
             {NETWATCH_BIN}",
            path.display()
        );
    }
    Ok(path)
}

/// Seconds from `since` to a log line's `timestamp` (RFC 3339, UTC), by the time of day
/// (negative if the line is earlier).
pub fn seconds_after(since: std::time::SystemTime, timestamp: &Value) -> f64 {
    let text = timestamp.as_str().unwrap_or_default();
    let of_day = text
        .split_once('T')
        .and_then(|(_, time)| {
            let mut parts = time.trim_end_matches('Z').split(':');
            let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
            Some(
                h.parse::<f64>().ok()? * 3600.0
                    + m.parse::<f64>().ok()? * 60.0
                    + s.parse::<f64>().ok()?,
            )
        })
        .unwrap_or_else(|| panic!("a log timestamp that is not RFC 3339 UTC: {timestamp}"));
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        % 86_400.0;
    let after = (of_day - since).rem_euclid(86_400.0);
    if after > 43_200.0 {
        after - 86_400.0
    } else {
        after
    }
}
