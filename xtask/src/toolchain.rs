//! The eBPF toolchain netwatch's build needs (docs/kernel-notes.md), and the Debian
//! packages its tests drive: checking them, and installing what is missing when we are root on
//! Debian.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// Debian packages: Rust 1.96 with its `core` source (the eBPF side needs `-Z build-std=core`
/// with a matching compiler), LLVM 22 for bpf-linker, a C toolchain, and the tools the
/// privileged tests and benchmarks drive: nginx with WebDAV as a mirror, aria2 and curl as
/// clients to compare with, and pip to install SeaweedFS (`test_tools`).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "build-essential",
    "pkg-config",
    "iproute2",
    "nftables",
    "iputils-ping",
    "nginx",
    "libnginx-mod-http-dav-ext",
    "aria2",
    "curl",
    "python3-pip",
    // systemd-analyze checks the service units (dist/systemd).
    "systemd",
    // dpkg-shlibdeps for `cargo xtask package` (build-essential brings it too).
    "dpkg-dev",
    // Certificates for the metrics exporter's TLS test.
    "openssl",
    // The build cache's test and bench build C through it.
    "ccache",
    // The SFTP tests' sshd, unpacked from openssh-server (`test_tools`), links libwrap.so.0.
    "libwrap0",
    // The transfer tests check cached chunks against their BLAKE3 ids with it, not with
    // netwatch's own code.
    "b3sum",
];
/// The packages that provide `/usr/bin/rustc`: reinstalled (upgraded) when it is too old.
const RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const RUSTC_VERSION: &str = "rustc 1.96.";
const BPF_LINKER: &str = "bpf-linker";
const BPF_LINKER_VERSION: &str = "bpf-linker 0.13.";
/// bpf-linker's default feature wants LLVM 23, which Debian does not have; 0.13 reads
/// `LLVM_PREFIX` (not `LLVM_SYS_*_PREFIX`).
const BPF_LINKER_INSTALL: &[&str] = &[
    "install",
    "bpf-linker@0.13.0",
    "--no-default-features",
    "--features",
    "llvm-22",
    "--locked",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// What is there and what is not.
struct Toolchain {
    missing_packages: Vec<&'static str>,
    /// `Ok(version line)`, or what is wrong with `/usr/bin/rustc`.
    rustc: Result<String, String>,
    /// `Ok((path, version line))`, or what is wrong with bpf-linker.
    bpf_linker: Result<(PathBuf, String), String>,
}

impl Toolchain {
    fn check() -> Self {
        let missing_packages = PACKAGES
            .iter()
            .copied()
            .filter(|name| !package_installed(name))
            .collect();
        let rustc = match cmd::probe(DEBIAN_RUSTC, &["--version"]) {
            Some(version) if version.starts_with(RUSTC_VERSION) => Ok(version),
            Some(version) => Err(format!("{DEBIAN_RUSTC} reports `{version}`, not 1.96")),
            None => Err(format!("{DEBIAN_RUSTC} (Rust 1.96) is missing")),
        };
        let bpf_linker = match find_bpf_linker() {
            None => Err(format!(
                "bpf-linker 0.13 is neither on PATH nor in {}",
                cargo_bin().display()
            )),
            Some(path) => match cmd::probe(&path, &["--version"]) {
                Some(version) if version.starts_with(BPF_LINKER_VERSION) => Ok((path, version)),
                Some(version) => Err(format!("{} is `{version}`, not 0.13", path.display())),
                None => Err(format!("{} --version failed", path.display())),
            },
        };
        Toolchain {
            missing_packages,
            rustc,
            bpf_linker,
        }
    }

    fn is_complete(&self) -> bool {
        self.missing_packages.is_empty() && self.rustc.is_ok() && self.bpf_linker.is_ok()
    }

    /// One line per missing piece.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.missing_packages.is_empty() {
            problems.push(format!(
                "Debian packages not installed: {}",
                self.missing_packages.join(" ")
            ));
        }
        problems.extend(self.rustc.as_ref().err().cloned());
        problems.extend(self.bpf_linker.as_ref().err().cloned());
        problems
    }

    /// The packages to `apt-get install`: the missing ones, plus Rust's when rustc is too old.
    fn packages_to_install(&self) -> Vec<&'static str> {
        let mut packages = self.missing_packages.clone();
        if self.rustc.is_err() {
            for package in RUST_PACKAGES {
                if !packages.contains(package) {
                    packages.push(package);
                }
            }
        }
        packages
    }
}

/// Makes sure the toolchain is complete: says so in one line if it is, installs what is missing
/// if we are root on Debian, and otherwise fails with the commands that would install it.
pub fn ensure() -> Result<()> {
    let started = Instant::now();
    let before = Toolchain::check();
    if before.is_complete() {
        ready(&before);
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists();
    if !cmd::is_root() || !debian {
        bail!(manual_instructions(&before, debian));
    }

    eprintln!("eBPF toolchain incomplete:");
    for problem in before.problems() {
        eprintln!("  - {problem}");
    }
    eprintln!("Installing it now (the first time takes a few minutes).");
    install(&before)?;

    let after = Toolchain::check();
    if !after.is_complete() {
        bail!(
            "the eBPF toolchain is still incomplete after installing:\n  - {}\n\
             See docs/kernel-notes.md for what each piece is.",
            after.problems().join("\n  - ")
        );
    }
    ready(&after);
    eprintln!("eBPF toolchain set up in {}", human(started.elapsed()));
    Ok(())
}

fn install(toolchain: &Toolchain) -> Result<()> {
    let packages = toolchain.packages_to_install();
    if !packages.is_empty() {
        cmd::run(Command::new("apt-get").arg("update"))
            .context("updating the apt package lists")?;
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&packages),
        )
        .context("installing the Debian packages of the eBPF toolchain and the tests")?;
    }
    if toolchain.bpf_linker.is_err() {
        // Outside the workspace, so the project's .cargo/config.toml does not apply.
        let mut install = cmd::cargo();
        install
            .current_dir(env::temp_dir())
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(BPF_LINKER_INSTALL);
        cmd::run(&mut install).context("building bpf-linker (about a minute on 2 cores)")?;
    }
    Ok(())
}

/// The one line printed when all is there. Puts bpf-linker's directory on PATH for the builds
/// this xtask starts when it was found only in cargo's bin directory.
fn ready(toolchain: &Toolchain) {
    let (rustc, (linker, linker_version)) = match (&toolchain.rustc, &toolchain.bpf_linker) {
        (Ok(rustc), Ok(linker)) => (rustc, linker),
        _ => return,
    };
    if cmd::find_on_path(BPF_LINKER).is_none() {
        if let Some(dir) = linker.parent() {
            prepend_to_path(dir);
        }
    }
    let short = |line: &str| line.split_whitespace().nth(1).unwrap_or(line).to_owned();
    eprintln!(
        "eBPF toolchain ok (rustc {}, bpf-linker {})",
        short(rustc),
        short(linker_version)
    );
}

/// The error for a user who is not root, or not on Debian: what is missing and how to get it.
fn manual_instructions(toolchain: &Toolchain, debian: bool) -> String {
    let sudo = if cmd::is_root() { "" } else { "sudo " };
    let mut text = String::from(
        "the eBPF toolchain netwatch's build needs (or a tool its tests need) is incomplete:\n",
    );
    for problem in toolchain.problems() {
        text += &format!("  - {problem}\n");
    }
    text += if debian {
        "`cargo xtask setup` installs it only when run as root. To install it yourself:\n"
    } else {
        "`cargo xtask setup` installs it only on Debian (no /etc/debian_version here). \
         These are Debian's commands; use your distribution's equivalents:\n"
    };
    let packages = toolchain.packages_to_install();
    if !packages.is_empty() {
        text += &format!("  {sudo}apt-get update\n");
        text += &format!(
            "  {sudo}apt-get install -y --no-install-recommends {}\n",
            packages.join(" ")
        );
    }
    if toolchain.bpf_linker.is_err() {
        text += &format!(
            "  LLVM_PREFIX={LLVM_PREFIX} cargo {}\n",
            BPF_LINKER_INSTALL.join(" ")
        );
    }
    text.trim_end().to_owned()
}

fn package_installed(name: &str) -> bool {
    cmd::probe("dpkg-query", &["-W", "-f=${Status}", name]).as_deref()
        == Some("install ok installed")
}

/// bpf-linker on PATH, else in cargo's bin directory (where `cargo install` puts it).
fn find_bpf_linker() -> Option<PathBuf> {
    cmd::find_on_path(BPF_LINKER).or_else(|| {
        let path = cargo_bin().join(BPF_LINKER);
        path.is_file().then_some(path)
    })
}

/// `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
fn cargo_bin() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    home.join("bin")
}

fn prepend_to_path(dir: &Path) {
    let old = env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(env::split_paths(&old));
    if let Ok(path) = env::join_paths(dirs) {
        // xtask is single-threaded, so changing its environment here is sound.
        env::set_var("PATH", path);
    }
}

/// "42.1 s", or "3 min 05 s".
fn human(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = elapsed.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain(packages: Vec<&'static str>, rustc_ok: bool, linker_ok: bool) -> Toolchain {
        Toolchain {
            missing_packages: packages,
            rustc: if rustc_ok {
                Ok("rustc 1.96.0".into())
            } else {
                Err("old".into())
            },
            bpf_linker: if linker_ok {
                Ok(("/x/bpf-linker".into(), "bpf-linker 0.13.0".into()))
            } else {
                Err("missing".into())
            },
        }
    }

    #[test]
    fn an_old_rustc_reinstalls_the_rust_packages_once() {
        let t = toolchain(vec!["nftables", "rustc-web"], false, true);
        assert_eq!(
            t.packages_to_install(),
            ["nftables", "rustc-web", "cargo-web", "rust-web-src"]
        );
    }

    #[test]
    fn instructions_name_each_missing_piece_and_the_commands() {
        let text = manual_instructions(&toolchain(vec!["nftables"], true, false), true);
        assert!(text.contains("Debian packages not installed: nftables"));
        assert!(text.contains("apt-get install -y --no-install-recommends nftables"));
        assert!(text.contains("LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(42_140)), "42.1 s");
        assert_eq!(human(Duration::from_secs(185)), "3 min 05 s");
    }
}
