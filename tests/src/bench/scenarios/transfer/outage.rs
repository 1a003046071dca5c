//! The original design's long transfer against real mirrors: a 2 GiB get from an SFTP mirror
//! (sshd) and one from an Azure mirror (Azurite), each over one link that goes down for 30 s in
//! the middle, first with the agent (network-aware retry) and then without (plain backoff, the
//! same policy). Per run: whether it completed byte-identical, the retries, how long it waited
//! for the network, how soon after the agent's Up it resumed, and how long it took after the
//! link came back. A quick run moves 256 MiB at 400 Mbit/s through a 12 s outage.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::artifact;
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;
use crate::outage_site::{Backend, OutageGet, OutageSite};

const KEY: &str = "bench/outage.bin";
/// Free space the run needs, in multiples of the artifact: the source, the mirror's copy (on
/// disk for SFTP), the output and the get's cache.
const SPACE_FACTOR: u64 = 4;

pub fn run(cx: &mut Context, report: &mut ScenarioReport, title: &str) -> Result<()> {
    // Quick: capped so the get lasts past the cut, and an outage still longer than ssh's
    // keepalives (so the SFTP session is replaced, as in the full run).
    let (size, outage, cut_after, cap) = if cx.options.quick {
        (
            256u64 << 20,
            Duration::from_secs(12),
            Duration::from_secs(1),
            Some(400_000_000),
        )
    } else {
        (
            2u64 << 30,
            Duration::from_secs(30),
            Duration::from_secs(1),
            None,
        )
    };
    let dir = tempfile::tempdir().context("a directory for the outage bench")?;
    check_space(dir.path(), size)?;
    report.notes.push(format!(
        "{} of pseudo-random bytes put (uncompressed) to the mirror in namespace A, then got in \
         namespace B, where the agent watches the mirror's address{}; {} s into each get, A's \
         end of the link goes down for {} s (B loses carrier). The same get then runs without the \
         agent: plain backoff with the same policy. `resumed` is the get's own \
         `resumed_after_up_ms`: from the agent's Up to the waiting request starting again.",
        fmt_bytes(size),
        cap.map_or(String::new(), |bits| format!(
            " (A's egress capped at {} Mbit/s)",
            bits / 1_000_000
        )),
        cut_after.as_secs(),
        outage.as_secs()
    ));
    let mut facts = Facts {
        title: format!(
            "{} get, link down {} s in the middle",
            fmt_bytes(size),
            outage.as_secs()
        ),
        headers: [
            "mirror",
            "retry",
            "completed",
            "retries",
            "waited for network",
            "agent Up -> resumed",
            "link back -> done",
            "total",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut raw = Vec::new();
    let steps = 2;
    for (step, backend) in [Backend::Sftp, Backend::Azure].into_iter().enumerate() {
        cx.check_interrupt()?;
        cx.progress(title, step + 1, steps);
        let site = OutageSite::start(backend, cap);
        let source = dir.path().join("source.bin");
        artifact::random_file(&source, size, 47)?;
        let expected = sha256_file(&source)?;
        site.put(&source, KEY, &dir.path().join("put-cache"));
        // Only its digest is needed from here on: room for the output.
        std::fs::remove_file(&source)?;
        remove_dir(&dir.path().join("put-cache"))?;
        let mut resumed = None;
        let mut complete = true;
        for aware in [true, false] {
            let out = dir.path().join("out.bin");
            let cache = dir.path().join("get-cache");
            let got = site.get_through_outage(KEY, &out, &cache, aware, cut_after, outage);
            let identical = got.ran.ok() && sha256_file(&out).ok() == Some(expected);
            let summary = got.summary();
            if aware {
                complete &= identical;
                resumed = summary
                    .as_ref()
                    .and_then(|s| s["resumed_after_up_ms"].as_f64());
                if !identical {
                    report.notes.push(format!(
                        "{}: the network-aware get did not complete: {}",
                        backend.name(),
                        got.ran.describe()
                    ));
                }
            }
            facts
                .rows
                .push(row(backend, aware, &got, identical, summary.as_ref()));
            raw.push(json!({
                "mirror": backend.name(),
                "network_aware": aware,
                "completed": identical,
                "summary": summary,
                "error": (!got.ran.ok()).then(|| got.ran.stderr()),
                "finished_after_restore_ms": got.finished_after_restore.map(|d| d.as_secs_f64() * 1e3),
                "elapsed_ms": got.elapsed.as_secs_f64() * 1e3,
            }));
            let _ = std::fs::remove_file(&out);
            remove_dir(&cache)?;
        }
        report.targets.push(Target {
            what: format!(
                "{}: the network-aware get completes byte-identical",
                backend.name()
            ),
            goal: "yes".into(),
            figure: if complete { "yes" } else { "no" }.into(),
            pass: complete,
            miss_by: (!complete).then(|| "did not complete".into()),
        });
        report.targets.push(Target::below(
            &format!("{}: agent Up to the get resuming", backend.name()),
            "< 100 ms",
            resumed.map(|ms| (ms * 1e6) as i64),
            100_000_000,
        ));
    }
    report.facts.push(facts);
    report.raw = json!({ "bytes": size, "outage_s": outage.as_secs(), "runs": raw });
    Ok(())
}

fn row(
    backend: Backend,
    aware: bool,
    got: &OutageGet,
    identical: bool,
    summary: Option<&Value>,
) -> Vec<String> {
    let field = |name: &str| summary.and_then(|s| s[name].as_f64());
    let ms = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    vec![
        backend.name().to_string(),
        if aware {
            "network-aware"
        } else {
            "plain backoff"
        }
        .to_string(),
        if identical { "yes" } else { "no" }.to_string(),
        field("retries").map_or("-".to_string(), |r| format!("{r:.0}")),
        secs(field("network_wait_ms").map(|ms| Duration::from_secs_f64(ms / 1e3))),
        ms(field("resumed_after_up_ms")),
        secs(got.finished_after_restore),
        secs(Some(got.elapsed)),
    ]
}

fn check_space(dir: &Path, size: u64) -> Result<()> {
    let stat = free_bytes(dir)?;
    if stat < SPACE_FACTOR * size {
        bail!(
            "the outage bench needs {} free under {} (the source, the mirror's copy, the output \
             and the cache), and there is {}: free some space, or run it with --quick \
             (256 MiB)",
            fmt_bytes(SPACE_FACTOR * size),
            dir.display(),
            fmt_bytes(stat)
        );
    }
    Ok(())
}

/// Bytes free for an unprivileged writer on `dir`'s file system.
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` is written by the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        bail!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the call succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail * stat.f_frsize)
}

fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().into())
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
