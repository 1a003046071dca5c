//! The transfer benchmarks' test bed: a client namespace and a mirror namespace joined by a
//! veth pair, nginx serving the mirror's directory, and the release `netwatch` run in the
//! client namespace with its own configuration file, caches and outputs. Baselines (curl,
//! aria2c) run in the same client namespace against the same nginx.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::servers::nginx::Nginx;
use crate::topology::{Pair, PairOptions};
use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::rtnl::Rtnl;

/// nginx's port in the mirror namespace (uncapped).
pub const NGINX_PORT: u16 = 80;
/// Plain files for the baselines live under this path of nginx's root; each mirror store
/// (see [`Site::store_url`]) under a path of its own.
const PLAIN: &str = "plain";

/// Dropped in field order: nginx before the namespaces it runs in.
pub struct Site {
    pub nginx: Nginx,
    pub pair: Pair,
    /// Artifacts, configurations, caches and outputs; removed on drop.
    pub dir: tempfile::TempDir,
}

/// One finished `netwatch put` or `get`: its wall time (process start to exit, as for the
/// baselines) and its `--json` summary.
pub struct Run {
    pub wall: Duration,
    pub summary: Value,
}

impl Run {
    /// A whole-number field of the summary.
    pub fn u64(&self, field: &str) -> Result<u64> {
        self.summary[field]
            .as_u64()
            .with_context(|| format!("the summary has no number `{field}`: {}", self.summary))
    }

    /// `elapsed_ms`: the transfer itself, without the process start and the mirror probe.
    pub fn elapsed(&self) -> Result<Duration> {
        Ok(Duration::from_millis(self.u64("elapsed_ms")?))
    }

    /// A text field of the summary.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.summary[field].as_str()
    }
}

impl Site {
    /// A fresh pair (A: client, B: mirror) with nginx on B. Checks the tools first, so that a
    /// missing one fails before anything is measured.
    pub fn new(tools: &[&str]) -> Result<Site> {
        for tool in tools {
            require(tool)?;
        }
        // The netwatch binary must exist before anything is measured.
        crate::agent::try_binary()?;
        let pair = Pair::with(PairOptions {
            b_up: true,
            ipv6: false,
            shared_index: None,
        });
        // A namespace reaches its own addresses over its loopback, which starts down: nginx's
        // readiness check and the proxy's upstream connections need it.
        for ns in [&pair.a, &pair.b] {
            Rtnl::open_in(ns)?
                .set_up(1, true)
                .with_context(|| format!("bringing lo up in {}", ns.name()))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("netwatch-bench-transfer-")
            .tempdir()
            .context("a directory for the transfer bench")?;
        let addr = SocketAddr::new(IpAddr::V4(pair.b_v4), NGINX_PORT);
        let nginx = Nginx::start(Some(&pair.b), addr, &dir.path().join("www"), None);
        Ok(Site { nginx, pair, dir })
    }

    pub fn client(&self) -> &NetNs {
        &self.pair.a
    }

    pub fn mirror(&self) -> &NetNs {
        &self.pair.b
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The URL of the mirror store `store` (a directory of nginx's root) through `port` of
    /// the mirror's address (nginx's own, or a front of it).
    pub fn store_url(&self, port: u16, store: &str) -> String {
        format!("http://{}:{port}/{store}", self.pair.b_v4)
    }

    /// The URL of a plain file placed with [`Site::place_plain`], through `port`.
    pub fn plain_url(&self, port: u16, name: &str) -> String {
        format!("http://{}:{port}/{PLAIN}/{name}", self.pair.b_v4)
    }

    /// Where [`Site::place_plain`] puts `name` (and `curl -T` to its URL writes).
    pub fn plain_path(&self, name: &str) -> PathBuf {
        self.nginx.root().join(PLAIN).join(name)
    }

    /// Stores `file` as one plain file on nginx, for curl and aria2c.
    pub fn place_plain(&self, file: &Path, name: &str) -> Result<()> {
        let dir = self.nginx.root().join(PLAIN);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(file, dir.join(name))
            .with_context(|| format!("copying {} onto the mirror", file.display()))?;
        Ok(())
    }

    /// Makes the empty store `store` holding only the bandwidth object of `like` (which
    /// a put there wrote), so that a put stores every chunk and `auto` measures the link by
    /// reading the bandwidth object. A fresh store rather than a cleared one: deleting thousands
    /// of chunk files would slow the next puts' file creation on ext4 for a minute or more
    /// (ext4's `recently_deleted` inode check).
    pub fn fresh_store(&self, store: &str, like: &str) -> Result<()> {
        let probe = Path::new("probe").join("bandwidth.bin");
        let (from, to) = (
            self.nginx.root().join(like).join(&probe),
            self.nginx.root().join(store).join(&probe),
        );
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying the bandwidth object {}", from.display()))?;
        Ok(())
    }

    /// Writes a configuration with one `[[mirror]]` at `url`; returns its path.
    pub fn config(&self, name: &str, url: &str) -> Result<PathBuf> {
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("[[mirror]]\nname = \"{name}\"\nurl = \"{url}\"\n"),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Runs `netwatch ARGS --config CONFIG --json` in the client namespace. No agent: the
    /// socket named does not exist, so retries are plain backoff (none are expected).
    /// `netwatch put FILE KEY --compression none`: the same bytes on the wire as a plain
    /// copy, for comparisons with curl and aria2c.
    pub fn put_raw(&self, config: &Path, source: &Path, key: &str) -> Result<Run> {
        let cache = self.path("put-cache");
        self.netwatch(
            config,
            &[
                "put",
                path_str(source)?,
                key,
                "--compression",
                "none",
                "--cache",
                path_str(&cache)?,
            ],
        )
    }

    pub fn netwatch(&self, config: &Path, args: &[&str]) -> Result<Run> {
        let socket = self.path("no-agent.sock");
        let mut full: Vec<&str> = args.to_vec();
        full.extend([
            "--config",
            path_str(config)?,
            "--socket",
            path_str(&socket)?,
            "--json",
        ]);
        let mut command = crate::cli::netwatch(Some(self.client()));
        command.args(&full);
        let (wall, stdout) = timed(command, "netwatch", &full)?;
        let summary: Value = serde_json::from_slice(&stdout).with_context(|| {
            format!(
                "netwatch {} printed no JSON summary: {}",
                args.join(" "),
                String::from_utf8_lossy(&stdout)
            )
        })?;
        Ok(Run { wall, summary })
    }

    /// Runs `program args...` in the client namespace; its wall time and stdout. Fails with
    /// its stderr unless it succeeded.
    pub fn timed(&self, program: &str, args: &[&str]) -> Result<(Duration, Vec<u8>)> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.client().name(), program])
            .args(args);
        timed(command, program, args)
    }

    /// Caps both ends of the veth at `mbit` (tbf, a burst of 1 ms at the rate, at least 32 KiB:
    /// a burst as large as the 1 MiB bandwidth probe would let the probe through unshaped).
    pub fn shape(&self, mbit: u64) -> Result<()> {
        let burst = (mbit * 1_000_000 / 8 / 1000).max(32 * 1024).to_string();
        let rate = format!("{mbit}mbit");
        for (ns, dev) in [
            (self.client(), &self.pair.a_if),
            (self.mirror(), &self.pair.b_if),
        ] {
            Site::tc(
                ns,
                &[
                    "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
                    "latency", "100ms",
                ],
            )?;
        }
        Ok(())
    }

    /// Runs `tc ARGS` in `ns`.
    pub fn tc(ns: &NetNs, args: &[&str]) -> Result<()> {
        let output = ns.exec("tc", args);
        if !output.status.success() {
            bail!(
                "`tc {}` in {} failed: {}",
                args.join(" "),
                ns.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Fails unless `path` is a file of `size` bytes: what a download must have written.
pub fn check_size(path: &Path, size: u64, who: &str) -> Result<()> {
    let got = std::fs::metadata(path)
        .with_context(|| format!("{who} wrote no {}", path.display()))?
        .len();
    if got != size {
        bail!(
            "{who} wrote {got} bytes to {}, the artifact has {size}",
            path.display()
        );
    }
    Ok(())
}

/// Waits until the disk has written back what earlier runs left dirty (untimed), so that no
/// method pays for another's writeback: on this kind of machine a run that starts behind
/// 1 GiB of dirty pages is throttled for seconds, whatever it does itself.
pub fn settle() {
    // SAFETY: no arguments, no memory shared; sync(2) cannot fail.
    unsafe { libc::sync() };
}

/// Removes a file or directory if it is there.
pub fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Fails, saying how to get it, unless `tool` runs.
fn require(tool: &str) -> Result<()> {
    let runs = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        bail!(
            "`{tool} --version` does not run: the transfer bench compares netwatch with {tool}; \
             `cargo xtask bench` installs it (or: apt-get install {})",
            if tool == "aria2c" { "aria2" } else { tool }
        );
    }
    Ok(())
}

/// Runs `command` (`program args...`, for messages) without netwatch's debug logs; its wall
/// time and stdout. Fails with its stderr unless it succeeded.
fn timed(mut command: Command, program: &str, args: &[&str]) -> Result<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let output = command
        .env_remove("RUST_LOG")
        .output()
        .with_context(|| format!("starting {program}"))?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((wall, output.stdout))
}
