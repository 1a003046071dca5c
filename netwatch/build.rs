//! Builds the kernel programs (`netwatch-ebpf`) from source as part of the normal build.
//!
//! The eBPF target needs `-Z build-std=core` with a compiler whose `core` source matches it
//! exactly: Debian's rustc-web 1.96 (`/usr/bin/rustc` + `/usr/bin/cargo`) and bpf-linker on
//! LLVM 22 (docs/kernel-notes.md). aya-build would need rustup's nightly instead,
//! so this script runs that cargo itself. `cargo xtask setup` installs the toolchain.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

const EBPF_CRATE: &str = "netwatch-ebpf";
const EBPF_TARGET: &str = "bpfel-unknown-none";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const SETUP_HINT: &str = "run `cargo xtask setup` to install it (as root on Debian)";

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .context("netwatch/ has no parent")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR")?);

    for watched in [
        "netwatch-ebpf/src",
        "netwatch-ebpf/Cargo.toml",
        "netwatch-common/src",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    check_toolchain()?;
    let target_dir = workspace.join("target").join("bpf");
    build_ebpf(&workspace, &target_dir)?;

    let object = target_dir
        .join(EBPF_TARGET)
        .join("release")
        .join("netwatch");
    std::fs::copy(&object, out_dir.join("netwatch.bpf.o"))
        .with_context(|| format!("copying the eBPF object {}", object.display()))?;
    Ok(())
}

fn check_toolchain() -> anyhow::Result<()> {
    for tool in [DEBIAN_RUSTC, DEBIAN_CARGO] {
        if !Path::new(tool).exists() {
            bail!("netwatch's eBPF programs need Debian's Rust 1.96 ({tool} is missing): {SETUP_HINT}");
        }
    }
    if find_in_path("bpf-linker", &search_path()).is_none() {
        bail!("netwatch's eBPF programs need bpf-linker 0.13 built against LLVM 22: {SETUP_HINT}");
    }
    Ok(())
}

fn build_ebpf(workspace: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let mut cargo = Command::new(DEBIAN_CARGO);
    // The outer cargo's variables (RUSTC pointing at rustup's compiler, its target dir, its
    // flags, its jobserver) would leak into this build and break it: start from a clean slate.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTUP")
            || key == "RUSTFLAGS"
        {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
        .current_dir(workspace)
        .env("PATH", search_path())
        .env("RUSTC", DEBIAN_RUSTC)
        // build-std is unstable; Debian's compiler is stable. This is the documented escape hatch.
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "build",
            "--package",
            EBPF_CRATE,
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            EBPF_TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir);
    let status = cargo
        .status()
        .with_context(|| format!("running {DEBIAN_CARGO}"))?;
    if !status.success() {
        bail!("building the eBPF programs ({EBPF_CRATE}) failed ({status}); the compiler's messages are above");
    }
    Ok(())
}

/// PATH with `$CARGO_HOME/bin` added, where `cargo install` puts bpf-linker.
fn search_path() -> OsString {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = cargo_home {
        dirs.push(home.join("bin"));
    }
    env::join_paths(dirs).unwrap_or_default()
}

fn find_in_path(binary: &str, path: &OsString) -> Option<PathBuf> {
    env::split_paths(path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}
