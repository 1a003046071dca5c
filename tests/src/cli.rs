//! The `netwatch` command run as a user would, for the tests and the bench: the binary (in a
//! namespace if asked) with none of the machine's netwatch, XDG or AWS settings, bounded in
//! time, and what it printed.

use std::{
    io::Read as _,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{agent::binary, netns::NetNs};

/// How long one CLI run may take before the test calls it hung.
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// `netwatch`, or `ip netns exec NS netwatch` when `ns` is given, its environment cleaned
/// of every setting of the machine's that netwatch reads (the settings resolver's variables,
/// XDG_CACHE_HOME, and AWS credentials, region, endpoint and profile).
pub fn netwatch(ns: Option<&NetNs>) -> Command {
    let mut command = match ns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns.name()]).arg(binary());
            command
        }
        None => Command::new(binary()),
    };
    use netwatch_client::paths::env_vars;
    for var in [
        env_vars::NETWATCH_CONFIG,
        env_vars::NETWATCH_CACHE_DIR,
        env_vars::NETWATCH_SOCKET,
        env_vars::NETWATCH_AGENT_USER,
        env_vars::NETWATCH_LOG_FORMAT,
        "XDG_CACHE_HOME",
    ] {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("AWS_") {
            command.env_remove(var);
        }
    }
    command
}

/// What one run gave.
#[derive(Debug)]
pub struct Ran {
    pub output: Output,
    pub args: Vec<String>,
}

impl Ran {
    /// Runs `command` (whose arguments, for messages, are `args`), bounded by RUN_LIMIT.
    pub fn bounded(command: Command, args: Vec<String>) -> Ran {
        Ran {
            output: run_bounded(command),
            args,
        }
    }

    pub fn ok(&self) -> bool {
        self.output.status.success()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The JSON on stdout, panicking with the run's output unless it succeeded.
    pub fn json(&self) -> Value {
        assert!(self.ok(), "{}", self.describe());
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.describe()))
    }

    /// The run's error, panicking unless it failed.
    pub fn failure(&self) -> String {
        assert!(!self.ok(), "expected a failure:\n{}", self.describe());
        self.stderr()
    }

    /// The run's error, panicking unless it failed and names each of `texts`.
    pub fn failure_naming(&self, texts: &[&str]) -> String {
        let error = self.failure();
        for text in texts {
            assert!(error.contains(text), "no `{text}` in:\n{}", self.describe());
        }
        error
    }

    pub fn describe(&self) -> String {
        format!(
            "netwatch {}: {}\nstdout: {}\nstderr: {}",
            self.args.join(" "),
            self.output.status,
            self.stdout().trim(),
            self.stderr().trim()
        )
    }
}

/// Runs `command` with piped output, killing it and panicking if it outlives RUN_LIMIT.
fn run_bounded(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on netwatch") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "{shown} did not finish within {RUN_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}
