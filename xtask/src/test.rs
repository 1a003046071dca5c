//! `cargo xtask test`: unit tests (no root), then the privileged integration tests in network
//! namespaces, as root.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{cmd, package, test_tools, test_tools::NETWATCH_BIN, toolchain};

const PRIVILEGED_TESTS: &str = "netwatch-tests";
/// The Debian package (debug build) the package test installs.
const NETWATCH_DEB: &str = "NETWATCH_DEB";
/// The tools the privileged tests drive; Debian keeps some in sbin, which is on root's PATH and
/// sudo's secure_path but often not on a user's.
const TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("nft", "nftables")];
const SBIN: &[&str] = &["/usr/sbin", "/sbin"];
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Args)]
pub struct TestArgs {
    /// Run only the unit tests, which need no root.
    #[arg(long)]
    pub unit_only: bool,

    /// Arguments for the privileged test binaries, after `--`: a test-name filter,
    /// `--nocapture`, `--test-threads 1`...
    #[arg(last = true, value_name = "TEST_ARGS")]
    pub test_args: Vec<OsString>,
}

pub fn test(args: TestArgs) -> Result<()> {
    toolchain::ensure()?;
    cmd::run(cmd::cargo().args([
        "test",
        "--workspace",
        "--exclude",
        PRIVILEGED_TESTS,
        "--exclude",
        "netwatch-ebpf",
    ]))
    .context("unit tests failed")?;
    if args.unit_only {
        eprintln!("Unit tests passed; privileged tests not run (--unit-only).");
        return Ok(());
    }

    // The transfer tests' servers; installed as the calling user, into target/.
    let tools = test_tools::ensure()?;
    cmd::run(cmd::cargo().args(["build", "-p", "netwatch", "--bin", "netwatch"]))
        .context("building the agent for the privileged tests")?;
    let agent = cmd::target_dir().join("debug").join("netwatch");
    // The package test installs and purges it.
    let deb = package::build(&package::PackageArgs {
        debug: true,
        out: None,
    })
    .context("building the Debian package for the privileged tests")?;
    // Built as the calling user, so only the test binaries themselves run as root: no
    // root-owned files in target/, and no need for cargo on root's PATH under sudo.
    let binaries = build_privileged_tests()?;

    let missing = missing_privileges();
    if !missing.is_empty() {
        let list = format!("  - {}", missing.join("\n  - "));
        if is_ci() {
            bail!("the privileged tests cannot run, and under CI that is a failure:\n{list}");
        }
        eprintln!("\n{}", "!".repeat(72));
        eprintln!("PRIVILEGED INTEGRATION TESTS SKIPPED (they were built, not run):\n{list}");
        eprintln!("Unit tests passed. Under CI=true this is a failure, not a skip.");
        eprintln!("{}", "!".repeat(72));
        return Ok(());
    }

    for (binary, package_dir) in binaries {
        let mut test = cmd::as_root(&binary)?;
        tools.pass_to(&mut test);
        test.env(NETWATCH_BIN, &agent)
            .env(NETWATCH_DEB, &deb)
            .env("CARGO_MANIFEST_DIR", &package_dir)
            .current_dir(&package_dir)
            .args(&args.test_args);
        cmd::run(&mut test).context("privileged integration tests failed")?;
    }
    Ok(())
}

/// Builds the privileged test binaries and returns each with its package directory (where
/// `cargo test` would run it).
fn build_privileged_tests() -> Result<Vec<(PathBuf, PathBuf)>> {
    let json = cmd::stdout_of(cmd::cargo().args([
        "test",
        "-p",
        PRIVILEGED_TESTS,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]))
    .context("building the privileged tests")?;
    let mut binaries = Vec::new();
    for line in json.lines().filter(|line| line.starts_with('{')) {
        let message: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("cargo printed a message that is not JSON: {line}"))?;
        let is_test =
            message["reason"] == "compiler-artifact" && message["profile"]["test"] == true;
        let (Some(binary), Some(manifest)) = (
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if is_test {
            let package_dir = Path::new(manifest).parent().unwrap_or(Path::new("."));
            binaries.push((PathBuf::from(binary), package_dir.to_path_buf()));
        }
    }
    if binaries.is_empty() {
        bail!("`cargo test -p {PRIVILEGED_TESTS} --no-run` built no test binary");
    }
    Ok(binaries)
}

/// What stops the privileged tests from running here, one line each.
fn missing_privileges() -> Vec<String> {
    let mut missing = Vec::new();
    if !cmd::is_root() && cmd::find_on_path("sudo").is_none() {
        missing.push("root: not running as root, and sudo is not installed".to_owned());
    }
    if !Path::new(KERNEL_BTF).exists() {
        missing.push(format!(
            "kernel BTF: {KERNEL_BTF} does not exist (kernel built without CONFIG_DEBUG_INFO_BTF)"
        ));
    }
    for (tool, package) in TOOLS {
        let in_sbin = SBIN.iter().any(|dir| Path::new(dir).join(tool).is_file());
        if cmd::find_on_path(tool).is_none() && !in_sbin {
            missing.push(format!(
                "`{tool}` not found on PATH (Debian package {package})"
            ));
        }
    }
    missing
}

fn is_ci() -> bool {
    env::var("CI").is_ok_and(|ci| ci.eq_ignore_ascii_case("true") || ci == "1")
}
