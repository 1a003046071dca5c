//! A backend beside a plain client on the same server: `netwatch put` and `get` of an
//! incompressible artifact, and the server's usual client moving the same bytes. Azure:
//! Azurite (Microsoft's emulator, on loopback, in memory) and curl uploading and downloading
//! one block blob with a Shared Key signed request. GCS: fake-gcs-server (in memory) and curl
//! on the same JSON API (a media upload, a media download). S3: SeaweedFS and curl with
//! `--aws-sigv4`, and the requests of a put, a cold get and an edit counted by the server
//! (`s3_requests`). SFTP: OpenSSH's sshd on loopback and
//! OpenSSH's `sftp` putting and getting the file. Each round runs the four in rotated order.
//! Reported, not judged: the issue asks for the rows, and neither server is a production one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::{artifact, paired_ratio, spread_row, times, SPREAD_HEADERS};
use crate::bench::report::{Facts, ScenarioReport};
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;
use crate::servers::{azurite::Azurite, fake_gcs::FakeGcs, seaweed::Seaweed, sshd::Sshd};

/// Which server, started.
pub enum Server {
    S3(Seaweed),
    Azure(Azurite),
    Gcs(FakeGcs),
    Sftp(Sshd),
}

impl Server {
    pub fn start_azurite() -> Self {
        Self::Azure(Azurite::start())
    }

    pub fn start_seaweed() -> Self {
        Self::S3(Seaweed::start(None, std::net::Ipv4Addr::LOCALHOST.into()))
    }

    pub fn start_fake_gcs() -> Self {
        Self::Gcs(FakeGcs::start())
    }

    pub fn start_sshd() -> Self {
        Self::Sftp(Sshd::start(None, std::net::Ipv4Addr::LOCALHOST.into()))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::S3(_) => "SeaweedFS",
            Self::Azure(_) => "Azurite",
            Self::Gcs(_) => "fake-gcs-server",
            Self::Sftp(_) => "sshd",
        }
    }

    fn about(&self) -> &'static str {
        match self {
            Self::S3(_) => {
                "SeaweedFS 4.48 (`weed mini`) on loopback, its data on this disk; curl moves the \
                 same bytes with one request signed by `--aws-sigv4` (PutObject, GetObject)"
            }
            Self::Azure(_) => {
                "Azurite 3.35 on loopback, its data in memory; curl moves the same bytes as one \
                 blob (Put Blob, Get Blob) with Shared Key headers the bench signs"
            }
            Self::Gcs(_) => {
                "fake-gcs-server 1.54 on loopback, its data in memory; curl moves the same bytes \
                 through the same JSON API (a media upload, a media download)"
            }
            Self::Sftp(_) => {
                "Debian's OpenSSH 9.2 sshd on loopback as `nobody`, its files on this disk; \
                 OpenSSH's `sftp` puts and gets the same file over the same kind of session"
            }
        }
    }

    fn methods(&self) -> [&'static str; 4] {
        match self {
            Self::S3(_) => [
                "netwatch put",
                "curl -T (one signed PUT)",
                "netwatch get",
                "curl -o (one signed GET)",
            ],
            Self::Azure(_) => [
                "netwatch put",
                "curl -T (one block blob)",
                "netwatch get",
                "curl -o (one block blob)",
            ],
            Self::Gcs(_) => [
                "netwatch put",
                "curl (media upload)",
                "netwatch get",
                "curl (media download)",
            ],
            Self::Sftp(_) => ["netwatch put", "sftp put", "netwatch get", "sftp get"],
        }
    }

    pub(super) fn url(&self, prefix: &str) -> String {
        match self {
            Self::S3(seaweed) => seaweed.url(prefix),
            Self::Azure(azurite) => azurite.url(prefix),
            Self::Gcs(gcs) => gcs.url(prefix),
            Self::Sftp(sshd) => sshd.url(prefix),
        }
    }

    fn client_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::S3(seaweed) => seaweed.client_env(),
            Self::Azure(azurite) => azurite.client_env(),
            Self::Gcs(gcs) => gcs.client_env(),
            Self::Sftp(sshd) => sshd.client_env(),
        }
    }

    /// The plain client uploading `source` as `name`.
    fn plain_put(&self, source: &Path, name: &str, size: u64) -> Result<Duration> {
        match self {
            Self::S3(seaweed) => curl(&[], &signed(seaweed, &["-T", path(source)?], name)),
            Self::Azure(azurite) => {
                let (url, headers) = azurite.signed_blob_request("PUT", name, Some(size));
                curl(&headers, &["-T", path(source)?, &url])
            }
            Self::Gcs(gcs) => curl(
                &["Content-Type: application/octet-stream".to_string()],
                &["-X", "POST", "-T", path(source)?, &gcs.upload_url(name)],
            ),
            Self::Sftp(sshd) => sftp(
                sshd,
                &format!("put {} {}/{name}", path(source)?, path(sshd.data_dir())?),
            ),
        }
    }

    /// The plain client downloading `name` into `out`.
    fn plain_get(&self, name: &str, out: &Path) -> Result<Duration> {
        match self {
            Self::S3(seaweed) => curl(&[], &signed(seaweed, &["-o", path(out)?], name)),
            Self::Azure(azurite) => {
                let (url, headers) = azurite.signed_blob_request("GET", name, None);
                curl(&headers, &["-o", path(out)?, &url])
            }
            Self::Gcs(gcs) => curl(&[], &["-o", path(out)?, &gcs.download_url(name)][..]),
            Self::Sftp(sshd) => sftp(
                sshd,
                &format!("get {}/{name} {}", path(sshd.data_dir())?, path(out)?),
            ),
        }
    }
}

const KEY: &str = "bench/backend.bin";

pub fn run(
    cx: &mut Context,
    report: &mut ScenarioReport,
    title: &str,
    server: Server,
) -> Result<()> {
    let rounds = cx.rounds(3, 1);
    let size: u64 = if cx.options.quick { 16 << 20 } else { 64 << 20 };
    let methods = server.methods();
    let dir = tempfile::tempdir().context("a directory for the backend bench")?;
    let source = dir.path().join("source.bin");
    artifact::random_file(&source, size, 31)?;
    report.notes.push(format!(
        "{}; {} of pseudo-random bytes. netwatch puts with `--compression none` into a new \
         prefix each round and gets into a new cache. Wall clock from process start to exit.",
        server.about(),
        fmt_bytes(size)
    ));
    let mut rates = vec![Vec::new(); methods.len()];
    for round in 1..=rounds {
        cx.check_interrupt()?;
        cx.progress(title, round, rounds);
        let work = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&work)?;
        let config = work.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[[mirror]]\nname = \"bench\"\nurl = \"{}\"\n",
                server.url(&format!("bench-{round}"))
            ),
        )?;
        let blob = format!("plain-{round}.bin");
        for k in 0..methods.len() {
            let m = (k + round) % methods.len();
            // A get needs the put before it: within a round, puts go first.
            let m = if k < 2 { m % 2 } else { 2 + m % 2 };
            let took = match m {
                0 => netwatch(
                    &server,
                    &config,
                    &work,
                    &["put", path(&source)?, KEY, "--compression", "none"],
                )?,
                1 => server.plain_put(&source, &blob, size)?,
                2 => {
                    let out = work.join("netwatch.out");
                    let took = netwatch(&server, &config, &work, &["get", KEY, path(&out)?])?;
                    same(&source, &out)?;
                    took
                }
                _ => {
                    let out = work.join("plain.out");
                    let took = server.plain_get(&blob, &out)?;
                    same(&source, &out)?;
                    took
                }
            };
            rates[m].push(size as f64 / took.as_secs_f64());
        }
    }
    let (put_ratio, _) = paired_ratio(&rates[0], &rates[1]);
    let (get_ratio, _) = paired_ratio(&rates[2], &rates[3]);
    let mut facts = Facts {
        title: format!(
            "{}, {}: throughput (netwatch put at {} of the plain client's, get at {})",
            server.name(),
            fmt_bytes(size),
            times(put_ratio),
            times(get_ratio)
        ),
        headers: SPREAD_HEADERS.map(String::from).to_vec(),
        rows: Vec::new(),
    };
    for (method, rates) in methods.iter().zip(&rates) {
        facts.rows.push(spread_row(method, rates));
    }
    report.facts.push(facts);
    let requests = match &server {
        Server::S3(_) => Some(super::s3_requests::run(cx, report, &server, dir.path())?),
        _ => None,
    };
    report.raw = json!({"requests": requests, "bytes": size, "rates": methods.iter().zip(&rates).map(|(m, r)| json!({"method": m, "bytes_per_sec": r})).collect::<Vec<_>>()});
    Ok(())
}

/// curl's arguments for `args` on object `name` of SeaweedFS's bucket, signed with its key.
fn signed(seaweed: &Seaweed, args: &[&str], name: &str) -> Vec<String> {
    use crate::servers::seaweed::{BUCKET, REGION};
    let (key, secret) = seaweed.credentials();
    let mut all: Vec<String> = vec![
        "--aws-sigv4".into(),
        format!("aws:amz:{REGION}:s3"),
        "--user".into(),
        format!("{key}:{secret}"),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all.push(format!("{}/{BUCKET}/{name}", seaweed.endpoint()));
    all
}

pub(super) fn path(p: &Path) -> Result<&str> {
    p.to_str().context("bench paths are UTF-8")
}

/// `netwatch ARGS --config C --cache WORK/cache --socket WORK/none.sock --json`, timed.
pub(super) fn netwatch(
    server: &Server,
    config: &Path,
    work: &Path,
    args: &[&str],
) -> Result<Duration> {
    let mut command = crate::cli::netwatch(None);
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--cache")
        .arg(work.join(format!("cache-{}", args[0])))
        .arg("--socket")
        .arg(work.join("none.sock"))
        .arg("--json")
        .envs(server.client_env());
    timed(command, "netwatch")
}

fn curl<S: AsRef<std::ffi::OsStr>>(headers: &[String], args: &[S]) -> Result<Duration> {
    let mut command = Command::new("curl");
    command.args(["-sS", "--fail"]);
    for header in headers {
        command.arg("-H").arg(header);
    }
    command.args(args);
    timed(command, "curl")
}

/// OpenSSH's `sftp` running one batch command with the bench's keys and known_hosts.
fn sftp(sshd: &Sshd, batch: &str) -> Result<Duration> {
    let batch_file = sshd.data_dir().with_extension("batch");
    std::fs::write(&batch_file, format!("{batch}\n"))?;
    let mut command = Command::new("sftp");
    command
        .arg("-q")
        .arg("-F")
        .arg(sshd.ssh_config_path())
        .arg("-P")
        .arg(sshd.addr().port().to_string())
        .arg("-b")
        .arg(&batch_file)
        .arg(format!("nobody@{}", sshd.addr().ip()))
        .stdout(Stdio::null());
    timed(command, "sftp")
}

fn timed(mut command: Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}

pub(super) fn same(a: &Path, b: &Path) -> Result<()> {
    if std::fs::read(a)? != std::fs::read(b)? {
        bail!("{} came back different", b.display());
    }
    std::fs::remove_file(b)?;
    Ok(())
}
