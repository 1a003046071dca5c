//! Azurite, Microsoft's Azure Storage emulator, for the Azure mirror tests: installed from
//! npm with the machine's Node.js into the target directory, once.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// The tests find `azurite-blob` through this variable.
pub const NETWATCH_AZURITE: &str = "NETWATCH_AZURITE";
const PACKAGE: &str = "azurite@3.35.0";
const VERSION: &str = "3.35.0";

/// Installs it unless that version is there already; returns `azurite-blob`.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("azurite");
    let command = dir.join("node_modules/.bin/azurite-blob");
    if !installed(&command) {
        if cmd::probe("npm", &["--version"]).is_none() {
            bail!(
                "Azurite is installed with npm, but `npm` does not run: install Node.js and npm \
                 (Debian packages nodejs and npm)"
            );
        }
        let started = Instant::now();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        cmd::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&dir)
                .arg(PACKAGE),
        )
        .with_context(|| format!("installing {PACKAGE} from npm"))?;
        eprintln!(
            "Azurite installed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if !installed(&command) {
            bail!(
                "npm installed {PACKAGE} into {}, but {} does not report {VERSION}: remove the \
                 directory and run again",
                dir.display(),
                command.display()
            );
        }
    }
    eprintln!("test tools ok (Azurite {VERSION} at {})", command.display());
    Ok(command)
}

fn installed(command: &Path) -> bool {
    command.is_file() && cmd::probe(command, &["--version"]).is_some_and(|v| v.contains(VERSION))
}
