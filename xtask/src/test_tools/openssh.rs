//! OpenSSH's `sshd`, the server the SFTP mirror tests run unprivileged. Installing Debian's
//! `openssh-server` would start a system sshd on port 22 (its postinst), so the package is
//! downloaded (`apt-get download`) and unpacked into the target directory instead: nothing is
//! installed and no service starts. It links `libwrap.so.0` (Debian's libwrap0, `toolchain`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// The tests find `sshd` through this variable.
pub const NETWATCH_SSHD: &str = "NETWATCH_SSHD";
const PACKAGE: &str = "openssh-server";
/// What `sshd -V` starts with; the Debian revision is not pinned.
const VERSION_PREFIX: &str = "OpenSSH_";

/// Unpacks `sshd` unless it is there and runs; says which it uses.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("openssh");
    let sshd = dir.join("root/usr/sbin/sshd");
    if version(&sshd).is_none() {
        let started = Instant::now();
        unpack(&dir)?;
        eprintln!(
            "OpenSSH's sshd unpacked in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let Some(version) = version(&sshd) else {
        bail!(
            "unpacked Debian's {PACKAGE} package into {}, but `{} -V` does not run: it needs \
             libwrap.so.0 (`cargo xtask setup` installs Debian's libwrap0 as root); else \
             remove {} and run again",
            dir.display(),
            sshd.display(),
            dir.display()
        );
    };
    eprintln!("test tools ok ({version} at {})", sshd.display());
    Ok(sshd)
}

/// The line of `sshd -V` that names OpenSSH, if it runs. sshd prints it to stderr, so
/// `cmd::probe` (stdout) does not serve.
fn version(sshd: &Path) -> Option<String> {
    if !sshd.is_file() {
        return None;
    }
    let output = Command::new(sshd).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|line| line.contains(VERSION_PREFIX))?;
    Some(line.trim().to_owned())
}

/// `apt-get download openssh-server` into `dir`, then `dpkg-deb -x` of it into `dir/root`;
/// the .deb is deleted afterwards.
fn unpack(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // As root, apt warns that the download is "unsandboxed" (its `_apt` user cannot write
    // here): harmless.
    cmd::run(
        Command::new("apt-get")
            .current_dir(dir)
            .args(["download", "-q", PACKAGE]),
    )
    .with_context(|| {
        format!(
            "downloading Debian's {PACKAGE} package for sshd (`apt-get update` first if apt \
             says it cannot find it)"
        )
    })?;
    let deb = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
    cmd::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(dir.join("root")),
    )
    .with_context(|| format!("unpacking {}", deb.display()))?;
    std::fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    Ok(())
}
