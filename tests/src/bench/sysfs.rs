//! The sysfs baseline: `operstate` and `carrier` polled at a fixed interval, as a script
//! would. sysfs shows the namespace it was mounted in, so the poller is this binary run again
//! under `ip netns exec NS` (which mounts a fresh sysfs), printing what it saw with
//! CLOCK_MONOTONIC stamps.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::NetNs;

use crate::clock::now_ns;
use crate::history::History;

/// What one poll read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub oper: String,
    /// `None` when the read fails (the kernel refuses `carrier` of an admin-down device).
    pub carrier: Option<u8>,
}

impl Seen {
    pub fn is_up(&self) -> bool {
        self.oper == "up" && self.carrier == Some(1)
    }
}

/// Parses one line of the poller: `<monotonic ns> <operstate> <carrier or ->`.
pub fn parse_line(line: &str) -> Option<(i64, Seen)> {
    let mut fields = line.split_whitespace();
    let at = fields.next()?.parse().ok()?;
    let oper = fields.next()?.to_string();
    let carrier = match fields.next()? {
        "-" => None,
        value => Some(value.parse().ok()?),
    };
    Some((at, Seen { oper, carrier }))
}

/// `netwatch-bench poll-sysfs DEV INTERVAL_MS LIMIT_S`: the child's main. Prints a line for
/// the first read and for every change; stops after `LIMIT_S`, when stdout closes, or when
/// its parent goes.
pub fn poll_main(args: &[String]) -> ExitCode {
    let [dev, interval_ms, limit_s] = args else {
        eprintln!("usage: netwatch-bench poll-sysfs DEV INTERVAL_MS LIMIT_S");
        return ExitCode::from(2);
    };
    let (Ok(interval_ms), Ok(limit_s)) = (interval_ms.parse::<u64>(), limit_s.parse::<u64>())
    else {
        eprintln!("poll-sysfs: INTERVAL_MS and LIMIT_S must be whole numbers");
        return ExitCode::from(2);
    };
    let interval = Duration::from_millis(interval_ms.max(1)).as_nanos() as i64;
    let base = format!("/sys/class/net/{dev}");
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let start = now_ns();
    let end = start + Duration::from_secs(limit_s).as_nanos() as i64;
    let mut last: Option<Seen> = None;
    let mut out = std::io::stdout().lock();
    let mut next = start;
    while now_ns() < end {
        let read = |file: &str| std::fs::read_to_string(format!("{base}/{file}"));
        let oper = read("operstate").map_or_else(|_| "-".to_string(), |s| s.trim().to_string());
        let carrier = read("carrier").ok().and_then(|s| s.trim().parse().ok());
        let at = now_ns();
        let seen = Seen { oper, carrier };
        if last.as_ref() != Some(&seen) {
            let carrier = seen
                .carrier
                .map_or_else(|| "-".to_string(), |c| c.to_string());
            if writeln!(out, "{at} {} {carrier}", seen.oper)
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
            last = Some(seen);
        }
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return ExitCode::SUCCESS;
        }
        next += interval;
        let wait = next - now_ns();
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait as u64));
        } else {
            next = now_ns();
        }
    }
    ExitCode::SUCCESS
}

/// A poller child and the thread that reads it; killed on drop.
pub struct Poller {
    pub seen: History<Seen>,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl Poller {
    /// Polls `dev` in `ns` every `interval`, for at most `limit`.
    pub fn start(
        ns: &NetNs,
        dev: &str,
        interval: Duration,
        limit: Duration,
    ) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(exe)
            .args(["poll-sysfs", dev])
            .arg(interval.as_millis().to_string())
            .arg(limit.as_secs().max(1).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let seen = History::new();
        let history = seen.clone();
        let reader = std::thread::Builder::new()
            .name("sysfs-reader".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some((at, value)) = parse_line(&line) {
                        history.push(at, value);
                    }
                }
                history.close();
            })?;
        Ok(Poller {
            seen,
            child,
            reader: Some(reader),
        })
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // `ip netns exec` execs the poller, so this pid is the poller's own.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poller_lines_parse_with_and_without_a_carrier() {
        let (at, seen) = parse_line("123456 up 1").expect("parses");
        assert_eq!(at, 123456);
        assert!(seen.is_up());
        let (_, down) = parse_line("7 down -").expect("parses");
        assert_eq!(down.carrier, None);
        assert!(!down.is_up());
        assert_eq!(parse_line("garbage"), None);
    }
}
