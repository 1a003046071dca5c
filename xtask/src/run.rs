//! `cargo xtask run`: build the agent in release mode and become it, as root.

use std::ffi::OsString;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{cmd, toolchain};

#[derive(Args)]
pub struct RunArgs {
    /// Arguments for `netwatch agent`, passed through unchanged (see `netwatch agent --help`).
    /// With none, the agent runs with its built-in defaults; `-- --help` shows the agent's help.
    #[arg(
        value_name = "AGENT_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

/// Sets up the toolchain, builds the agent and execs it (through `sudo -E` when not root), so
/// the agent gets SIGINT/SIGTERM itself and its exit code is this command's.
pub fn run(args: RunArgs) -> Result<()> {
    toolchain::ensure()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "netwatch", "--bin", "netwatch"]))
        .context("building the agent")?;
    let binary = cmd::target_dir().join("release").join("netwatch");
    let mut agent = cmd::as_root(&binary)?;
    agent.arg("agent").args(args.args);
    Err(cmd::exec(agent))
}
