//! `NetNs`: a named network namespace that lives as long as its guard, and ways to run code in it.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};

/// A network namespace made with `ip netns add`, deleted again on drop (also while unwinding).
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `nwt-<pid>-<n>`, a name no other test of this or any other process uses.
    pub fn new() -> Self {
        let name = format!("nwt-{}-{}", std::process::id(), crate::next_id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `ip netns add {name}`: {e}"));
        assert!(status.success(), "`ip netns add {name}` failed: {status}");
        NetNs { name }
    }

    /// The name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that keeps the namespace alive; open it to enter the namespace.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Opens the namespace file, e.g. for `setns_by_fd` when moving a link into it.
    pub fn open(&self) -> File {
        File::open(self.path()).unwrap_or_else(|e| panic!("cannot open {}: {e}", self.path()))
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    ///
    /// `setns(2)` moves only the calling thread, so the thread enters the namespace before `f`
    /// creates any socket or runtime. A panic in `f` is re-raised here.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.open();
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: `ns` is an open namespace file; setns only changes this thread.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert!(
                        rc == 0,
                        "setns into {} failed: {}",
                        self.path(),
                        std::io::Error::last_os_error()
                    );
                    drop(ns);
                    f()
                })
                .expect("spawn a namespace thread");
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a new thread that has entered this namespace and lets it run in the
    /// background; join the handle for its result (a panic in `f` comes back from `join`).
    pub fn spawn<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = self.open();
        let path = self.path();
        std::thread::Builder::new()
            .name(format!("{what}-in-{}", self.name))
            .spawn(move || {
                // SAFETY: `ns` is an open namespace file; setns only changes this thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert!(
                    rc == 0,
                    "setns into {path} failed: {}",
                    std::io::Error::last_os_error()
                );
                drop(ns);
                f()
            })
            .unwrap_or_else(|e| panic!("spawning the {what} thread: {e}"))
    }

    /// Sets sysctl `key` (e.g. `net.ipv6.conf.all.disable_ipv6`) to `value` in this namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// Runs `fut` to completion on a current-thread tokio runtime inside this namespace.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.run(|| block_on_here(fut))
    }

    /// Runs `ip netns exec NAME program args...` and returns its output, whatever its status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.exec_with_stdin(program, args, None)
    }

    /// Like [`NetNs::exec`], but panics with the program's stderr unless it succeeded.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> Output {
        let output = self.exec(program, args);
        assert_success(&self.name, program, args, &output);
        output
    }

    /// Runs `ip netns exec NAME program args...` with `stdin` written to its standard input.
    pub fn exec_with_stdin(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec {} {program}`: {e}", self.name));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write to {program}'s stdin: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{program}` failed: {e}"))
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth ends, which also removes their peers.
        let result = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        if !matches!(result, Ok(status) if status.success()) && !std::thread::panicking() {
            panic!("`ip netns del {}` failed: {result:?}", self.name);
        }
    }
}

/// Runs `fut` on a current-thread tokio runtime in the calling thread (and so in its namespace).
pub fn block_on_here<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a current-thread tokio runtime")
        .block_on(fut)
}

/// Panics with the command line and its stderr unless `output` reports success.
pub fn assert_success(ns: &str, program: &str, args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "`ip netns exec {ns} {program} {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
