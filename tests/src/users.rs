//! Running things as an unprivileged user (`nobody`), bounded in time: the clients, attackers
//! and careless users the tests play.

use std::borrow::BorrowMut;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::agent;

/// `nobody` and Debian's `users` group.
pub const NOBODY: u32 = 65534;
pub const USERS_GID: u32 = 100;

/// `program args...` run as `nobody`: with `users` as its only supplementary group, or with
/// none.
pub fn as_nobody_run(in_users: bool, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg(if in_users {
            format!("--groups={USERS_GID}")
        } else {
            "--clear-groups".to_string()
        })
        .arg(program)
        .args(args)
        .env_remove("NETWATCH_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The `netwatch` binary run as `nobody` (see [`as_nobody_run`]).
pub fn as_nobody(in_users: bool, args: &[&str]) -> Command {
    let binary = agent::binary();
    as_nobody_run(in_users, binary.to_str().expect("a UTF-8 path"), args)
}

/// A Python program run as `nobody`, with no supplementary group.
pub fn python_as_nobody(code: &str) -> Command {
    // Debian's python: a user-installed one may live where nobody cannot reach.
    as_nobody_run(false, "/usr/bin/python3", &["-c", code])
}

/// Runs `command` to its end, killing it after `limit`.
pub fn run_bounded(mut command: impl BorrowMut<Command>, limit: Duration) -> Output {
    let command = command.borrow_mut();
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    wait_bounded(child, limit)
}

/// Waits for `child` to end, killing it (and panicking with its output) after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for the child").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child
                .wait_with_output()
                .expect("collect the child's output");
            panic!(
                "the child did not exit within {limit:?}; stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .expect("collect the child's output")
}

/// A process's exit status and output, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A child killed (and reaped) on drop: an attacker process that runs until the test ends.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
