//! kubernetes-validate (PyPI), which checks Kubernetes manifests against the API's own
//! schemas, bundled, offline: installed with pip into the target directory, once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cmd;

/// The tests find the installed package's directory through this variable (the command is
/// `DIR/bin/kubernetes-validate`, run with `PYTHONPATH=DIR`).
pub const NETWATCH_KUBERNETES_VALIDATE: &str = "NETWATCH_KUBERNETES_VALIDATE";
const PACKAGE: &str = "kubernetes-validate==1.37.0";
const VERSION: &str = "1.37.0";

/// Installs it unless that version is there already; returns its directory.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("kubernetes-validate");
    if !installed(&dir) {
        super::pip::install(&dir, PACKAGE, "kubernetes-validate (22 MB of schemas)")?;
        if !installed(&dir) {
            bail!(
                "pip installed {PACKAGE} into {}, but its command does not report {VERSION}: \
                 remove the directory and run again",
                dir.display()
            );
        }
    }
    eprintln!(
        "test tools ok (kubernetes-validate {VERSION} at {})",
        dir.display()
    );
    Ok(dir)
}

fn installed(dir: &Path) -> bool {
    let command = dir.join("bin").join("kubernetes-validate");
    command.is_file()
        && cmd::probe_with_env(&command, &["--version"], &[("PYTHONPATH", dir.as_os_str())])
            .is_some_and(|version| version.contains(VERSION))
}
