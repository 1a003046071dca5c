//! The Debian package (`cargo xtask package`) as an operator meets it: `dpkg -i` installs what
//! it lists, the installed agent runs on the installed configuration as the user the package
//! made, `dpkg -r` keeps the operator's configuration, and `dpkg --purge` leaves the machine
//! as it was.
//!
//! This installs into the real system (the privileged tests run as root on a throw-away
//! machine): it refuses to run where a netwatch package is installed already, and purges the
//! package on the way out, failed or not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use netwatch_tests::agent::{Agent, Launch};
use netwatch_tests::require_privileges;
use netwatch_tests::topology::Pair;

const NETWATCH_DEB: &str = "NETWATCH_DEB";
const INSTALLED: &str = "/usr/bin/netwatch";
const CONFFILE: &str = "/etc/netwatch.toml";
/// Where installing and purging may leave traces. dpkg's own database is left out: it keeps
/// a package's history (status-old, triggers) by design.
const WATCHED: &[&str] = &["/etc", "/usr", "/var/lib"];
/// The agent's runtime directory: the package makes it, and purging removes it (empty).
const RUNTIME_DIR: &str = "/run/netwatch";

fn package() -> PathBuf {
    let deb = std::env::var_os(NETWATCH_DEB)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{NETWATCH_DEB} is not set: `cargo xtask test` builds the package and sets it")
        });
    assert!(
        deb.is_file(),
        "{NETWATCH_DEB}={} is not a file",
        deb.display()
    );
    deb
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg-query`'s status of the package: `None` when dpkg does not know it.
fn package_status() -> Option<String> {
    let out = run(
        "dpkg-query",
        &["--showformat=${Status}", "--show", "netwatch"],
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !status.is_empty()).then_some(status)
}

/// Every path under [`WATCHED`] with its type, and the account databases' lines: what the
/// package may change. (The account files' `-` backups are shadow-utils' own.)
fn snapshot() -> BTreeSet<String> {
    let mut args: Vec<&str> = WATCHED
        .iter()
        .copied()
        .filter(|dir| Path::new(dir).exists())
        .collect();
    args.extend([
        "-xdev",
        "(",
        "-path",
        "/var/lib/dpkg",
        "-o",
        "-name",
        "*-",
        ")",
        "-prune",
        "-o",
        "-printf",
        "%p %y\n",
    ]);
    let mut seen: BTreeSet<String> = run_ok("find", &args).lines().map(str::to_owned).collect();
    for file in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        seen.extend(text.lines().map(|line| {
            // A shadow line's third field is the day of the last change: not ours to compare.
            let mut fields: Vec<&str> = line.split(':').collect();
            if file.ends_with("shadow") && fields.len() > 2 {
                fields[2] = "";
            }
            format!("{file}: {}", fields.join(":"))
        }));
    }
    seen
}

/// Purges the package when dropped, so a failed assertion leaves no package installed.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = run("dpkg", &["--purge", "netwatch"]);
        }
    }
}

#[test]
fn installing_running_removing_and_purging_the_package() {
    require_privileges();
    let deb = package();
    assert_eq!(
        package_status(),
        None,
        "a netwatch package is installed on this machine; this test installs and purges its \
         own, so run it where none is"
    );
    let before = snapshot();
    let _purge = PurgeOnDrop;

    run_ok("dpkg", &["--install", deb.to_str().expect("a UTF-8 path")]);
    assert_eq!(package_status().as_deref(), Some("install ok installed"));

    let version = run_ok(INSTALLED, &["--version"]);
    assert!(version.starts_with("netwatch "), "{version}");
    let page = run_ok("zcat", &["/usr/share/man/man1/netwatch-get.1.gz"]);
    assert!(page.contains("netwatch-get"), "the man page: {page}");
    let conffiles = run_ok(
        "dpkg-query",
        &["--showformat=${Conffiles}", "--show", "netwatch"],
    );
    assert!(conffiles.contains(CONFFILE), "conffiles: {conffiles}");
    let user = run_ok("getent", &["passwd", "netwatch"]);
    assert!(
        user.contains(":netwatch agent:") && user.trim_end().ends_with("nologin"),
        "the agent's user: {user}"
    );
    assert!(Path::new(RUNTIME_DIR).is_dir(), "no {RUNTIME_DIR}");
    let enabled = "/etc/systemd/system/multi-user.target.wants/netwatch.service";
    assert!(
        std::fs::read_link(enabled).is_ok(),
        "netwatch.service is not enabled ({enabled})"
    );
    run_ok(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/netwatch.service"],
    );

    // The installed binary on the installed configuration, dropping to the installed user.
    let config = std::fs::read_to_string(CONFFILE).expect("reading the conffile");
    run_installed_agent(&config);

    // Removing keeps the operator's configuration; purging takes it.
    std::fs::write(CONFFILE, format!("{config}\n# an operator's edit\n"))
        .expect("editing the conffile");
    run_ok("dpkg", &["--remove", "netwatch"]);
    assert!(
        !Path::new(INSTALLED).exists(),
        "{INSTALLED} stayed after dpkg -r"
    );
    let kept = std::fs::read_to_string(CONFFILE).expect("the conffile stays after dpkg -r");
    assert!(kept.ends_with("# an operator's edit\n"), "{kept}");
    run_ok("dpkg", &["--purge", "netwatch"]);
    assert_eq!(package_status(), None);
    assert!(
        !Path::new(RUNTIME_DIR).exists(),
        "{RUNTIME_DIR} stayed after the purge"
    );

    let after = snapshot();
    let left: Vec<_> = after.difference(&before).collect();
    let taken: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && taken.is_empty(),
        "install and purge changed the machine:\nleft behind: {left:#?}\ntaken away: {taken:#?}"
    );
}

/// Runs the installed agent on `config` until it serves, then stops it; its socket is gone
/// when this returns.
fn run_installed_agent(config: &str) {
    let pair = Pair::new();
    let mut agent = Agent::launch(
        &pair.b,
        &Launch {
            binary: Some(Path::new(INSTALLED)),
            config: Some(config),
            ..Launch::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    agent
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}: {}", agent.tail()));
    agent.get().expect("the installed agent answers");
    let dropped = agent.wait_for("privileges dropped", |_| true, Duration::from_secs(5));
    assert_eq!(dropped["user"], "netwatch", "{dropped}");
    let status = agent.terminate();
    assert!(status.success(), "{status}: {}", agent.tail());
}
