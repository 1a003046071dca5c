//! Prometheus's `promtool`, which lints the agent's metrics. Debian ships it only inside the
//! `prometheus` package, whose install would also start a Prometheus server; so the package
//! is downloaded (`apt-get download`, 19 MB) and unpacked into the target directory, and
//! only `promtool` is used. Nothing is installed and no service starts.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// The test binaries find `promtool` through this variable.
pub const NETWATCH_PROMTOOL: &str = "NETWATCH_PROMTOOL";
const PACKAGE: &str = "prometheus";

/// Unpacks `promtool` unless it is there and runs; says which it uses.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("prometheus");
    let promtool = dir.join("usr").join("bin").join("promtool");
    if version(&promtool).is_none() {
        unpack(&dir)?;
    }
    let Some(version) = version(&promtool) else {
        bail!(
            "unpacked Debian's {PACKAGE} package into {}, but {} does not run: remove {} and \
             run again",
            dir.display(),
            promtool.display(),
            dir.display()
        );
    };
    eprintln!("test tools ok ({version} at {})", promtool.display());
    Ok(promtool)
}

/// The first line of `promtool --version`, if it runs.
fn version(promtool: &Path) -> Option<String> {
    if !promtool.is_file() {
        return None;
    }
    let out = cmd::probe(promtool, &["--version"])?;
    out.lines().next().map(str::to_string)
}

/// `apt-get download prometheus` into a scratch directory, then `dpkg-deb -x` of it into
/// `dir`; the .deb is deleted afterwards.
fn unpack(dir: &Path) -> Result<()> {
    let download = dir.with_extension("download");
    for stale in [dir, &download] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    cmd::run(
        Command::new("apt-get")
            .current_dir(&download)
            .args(["download", "-q", PACKAGE]),
    )
    .with_context(|| {
        format!(
            "downloading Debian's {PACKAGE} package for promtool (`apt-get update` first if \
             apt says it cannot find it)"
        )
    })?;
    let deb = std::fs::read_dir(&download)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    std::fs::remove_dir_all(&download)
        .with_context(|| format!("removing {}", download.display()))?;
    Ok(())
}
