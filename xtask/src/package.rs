//! `cargo xtask package`: the Debian package, built with Debian's own tools (dpkg-shlibdeps
//! for the library dependencies, dpkg-deb for the archive) from what is in the repository.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{cmd, toolchain};

const PACKAGE: &str = "netwatch";
/// The configuration file the agent reads when it exists; a conffile, so dpkg keeps an
/// operator's edits across upgrades and removes it only on purge.
const CONFFILE: &str = "etc/netwatch.toml";

/// Files taken from the repository as they are: (source, path in the package, mode).
const FILES: &[(&str, &str, u32)] = &[
    (
        "dist/systemd/netwatch.service",
        "usr/lib/systemd/system/",
        0o644,
    ),
    (
        "dist/systemd/netwatch-wait-online.service",
        "usr/lib/systemd/system/",
        0o644,
    ),
    (
        "dist/systemd/netwatch.sysusers",
        "usr/lib/sysusers.d/netwatch.conf",
        0o644,
    ),
    (
        "dist/systemd/netwatch.tmpfiles",
        "usr/lib/tmpfiles.d/netwatch.conf",
        0o644,
    ),
    (
        "dist/prometheus/netwatch.rules.yml",
        "usr/share/netwatch/prometheus/",
        0o644,
    ),
    (
        "dist/grafana/netwatch-host.json",
        "usr/share/netwatch/grafana/",
        0o644,
    ),
    (
        "dist/grafana/netwatch-fleet.json",
        "usr/share/netwatch/grafana/",
        0o644,
    ),
    (
        "docs/netwatch.example.toml",
        "usr/share/doc/netwatch/examples/netwatch.toml",
        0o644,
    ),
    ("dist/debian/postinst", "DEBIAN/", 0o755),
    ("dist/debian/prerm", "DEBIAN/", 0o755),
    ("dist/debian/postrm", "DEBIAN/", 0o755),
];
/// Documentation, into /usr/share/doc/netwatch/ under its own name.
const DOCS: &[&str] = &[
    "dist/debian/copyright",
    "README.md",
    "docs/config.md",
    "docs/protocol.md",
    "docs/verdict.md",
    "docs/retry.md",
    "docs/transfer.md",
    "docs/build-cache.md",
    "docs/kernel-notes.md",
];
const DOC_DIR: &str = "usr/share/doc/netwatch/";

#[derive(Args)]
pub struct PackageArgs {
    /// Package the debug build, compressed fast, instead of the release build compressed
    /// with xz: quicker to make, for tests (`cargo xtask test` installs such a package).
    #[arg(long)]
    pub debug: bool,

    /// The directory to write netwatch_VERSION_ARCH.deb into (default: TARGET_DIR/debian).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Builds the package and prints its path on stdout.
pub fn package(args: &PackageArgs) -> Result<()> {
    toolchain::ensure()?;
    let deb = build(args)?;
    println!("{}", deb.display());
    Ok(())
}

/// Builds the binary and the package; returns the package's path.
pub fn build(args: &PackageArgs) -> Result<PathBuf> {
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = cmd::cargo();
    build.args(["build", "-p", PACKAGE, "--bin", PACKAGE]);
    if !args.debug {
        build.arg("--release");
    }
    cmd::run(&mut build).context("building the binary to package")?;
    let binary = cmd::target_dir().join(profile).join(PACKAGE);

    // dpkg-shlibdeps wants the debhelper layout: debian/control beside debian/PACKAGE/.
    let work = cmd::target_dir()
        .join("debian")
        .join(format!("build-{profile}"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let root = work.join("debian").join(PACKAGE);
    stage(&root, &binary)?;
    let depends = shlib_depends(&work, &root)?;
    let (version, arch) = (version()?, architecture()?);
    write_control(&root, &version, &arch, &depends)?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| cmd::target_dir().join("debian"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let compression: &[&str] = if args.debug {
        &["-Zgzip", "-z1"]
    } else {
        &["-Zxz"]
    };
    cmd::run(
        Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .args(compression)
            .arg("--build")
            .arg(&root)
            .arg(&deb),
    )
    .context("dpkg-deb (Debian's dpkg package)")?;
    Ok(deb)
}

/// Lays out the package's files under `root`.
fn stage(root: &Path, binary: &Path) -> Result<()> {
    let repo = cmd::workspace_root();
    let docs = DOCS.iter().map(|source| (*source, DOC_DIR, 0o644));
    for (source, dest, mode) in FILES.iter().copied().chain(docs) {
        // A destination ending in `/` is a directory: the file keeps its name.
        let dest = match dest.strip_suffix('/') {
            Some(dir) => root
                .join(dir)
                .join(Path::new(source).file_name().expect("a file")),
            None => root.join(dest),
        };
        create_parent(&dest)?;
        fs::copy(repo.join(source), &dest)
            .with_context(|| format!("copying {source} into the package"))?;
        set_mode(&dest, mode)?;
    }

    let installed = root.join("usr/bin").join(PACKAGE);
    create_parent(&installed)?;
    // Debian ships binaries without their symbols; the kernel programs' BTF is data, kept.
    cmd::run(
        Command::new("strip")
            .args(["--strip-unneeded", "-o"])
            .arg(&installed)
            .arg(binary),
    )
    .context("strip (Debian's binutils)")?;
    set_mode(&installed, 0o755)?;

    let man = root.join("usr/share/man/man1");
    cmd::stdout_of(Command::new(&installed).arg("manpages").arg(&man))
        .context("writing the man pages")?;
    let mut gzip = Command::new("gzip");
    gzip.arg("-9n");
    for page in fs::read_dir(&man).context("listing the man pages")? {
        gzip.arg(page?.path());
    }
    cmd::run(&mut gzip).context("compressing the man pages")?;

    let conffile = root.join(CONFFILE);
    create_parent(&conffile)?;
    let example = fs::read_to_string(repo.join("docs/netwatch.example.toml"))
        .context("reading docs/netwatch.example.toml")?;
    fs::write(&conffile, commented_out(&example)).context("writing the conffile")?;
    set_mode(&conffile, 0o644)?;
    fs::write(root.join("DEBIAN/conffiles"), format!("/{CONFFILE}\n"))
        .context("writing DEBIAN/conffiles")?;
    Ok(())
}

/// The example configuration with every setting commented out: installed, it changes
/// nothing (the agent runs on its defaults) and shows each key where it would go.
pub fn commented_out(example: &str) -> String {
    let mut text = String::from(
        "# netwatch agent configuration, read by `netwatch agent` (and netwatch.service).\n\
         #\n\
         # Every setting is commented out: the agent runs with its built-in defaults. Uncomment\n\
         # what you change; /usr/share/doc/netwatch/config.md says what each key does.\n",
    );
    // The example's own header describes the example; the rest describes the keys.
    let body = example.split_once("\n\n").map_or(example, |(_, body)| body);
    for line in body.lines() {
        text.push('\n');
        let setting = !line.is_empty() && !line.starts_with('#');
        if setting {
            text.push('#');
        }
        text.push_str(line);
    }
    text.push('\n');
    text
}

/// The library packages the binary needs, as dpkg-shlibdeps computes them.
fn shlib_depends(work: &Path, root: &Path) -> Result<String> {
    fs::write(
        work.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )
    .context("writing debian/control for dpkg-shlibdeps")?;
    let binary = root.join("usr/bin").join(PACKAGE);
    let out = cmd::stdout_of(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", binary.display()))
            .current_dir(work),
    )
    .context("dpkg-shlibdeps (Debian's dpkg-dev package)")?;
    match out.trim().strip_prefix("shlibs:Depends=") {
        Some(depends) => Ok(depends.to_owned()),
        None => bail!("dpkg-shlibdeps printed no shlibs:Depends line: {out}"),
    }
}

fn write_control(root: &Path, version: &str, arch: &str, depends: &str) -> Result<()> {
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: netwatch developers <netwatch@example.invalid>\n\
         Installed-Size: {size}\n\
         Depends: {depends}, passwd\n\
         Recommends: systemd\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.invalid/netwatch\n\
         Description: network verdicts (Up, Degraded, Down) from the kernel\n \
         netwatch tells programs on a Linux host, within milliseconds, whether the network\n \
         they depend on is Up, Degraded or Down, from eBPF counters and rtnetlink events.\n \
         .\n \
         This package holds the netwatch command (agent, status, watch, wait-online,\n \
         check, get, put, mirrors, sync), netwatch.service, which runs the agent, and\n \
         netwatch-wait-online.service; Prometheus rules and Grafana dashboards are in\n \
         /usr/share/netwatch.\n",
        size = kib_under(root)?,
    );
    fs::write(root.join("DEBIAN/control"), control).context("writing DEBIAN/control")
}

/// The netwatch crate's version, as Cargo.toml gives it.
fn version() -> Result<String> {
    let json =
        cmd::stdout_of(cmd::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))
            .context("cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_str(&json).context("cargo metadata printed something not JSON")?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == PACKAGE)
        .and_then(|package| package["version"].as_str())
        .map(str::to_owned)
        .context("cargo metadata lists no netwatch package")
}

fn architecture() -> Result<String> {
    Ok(
        cmd::stdout_of(Command::new("dpkg").arg("--print-architecture"))?
            .trim()
            .to_owned(),
    )
}

/// Installed-Size: the files' sizes in KiB, rounded up each, as dpkg-gencontrol counts them.
fn kib_under(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && entry.file_name() != "DEBIAN" {
            total += kib_under(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len().div_ceil(1024);
        }
    }
    Ok(total)
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .context("a path in the package has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conffile_comments_out_every_setting_and_keeps_the_explanations() {
        let example = "# Example header.\n# Sets every key.\n\n[agent]\n# Why.\nuser = \"x\"\n\n[metrics]\nenabled = true\n";
        let conffile = commented_out(example);
        assert!(!conffile.contains("Example header"), "{conffile}");
        assert!(
            conffile.contains("\n#[agent]\n# Why.\n#user = \"x\"\n\n#[metrics]\n#enabled = true\n"),
            "{conffile}"
        );
        assert!(
            conffile
                .lines()
                .all(|line| line.is_empty() || line.starts_with('#')),
            "{conffile}"
        );
    }
}
