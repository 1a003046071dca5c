//! A real SFTP mirror: OpenSSH's `sshd` run as `nobody` (no root, no system service), with a
//! host key and an authorized user key made for each instance, `internal-sftp` forced, and a
//! `data/` directory owned by `nobody` as the mirror's root. Also the client side: an
//! `ssh_config` and a `known_hosts` that trust exactly this server, and the broken variants the
//! failure tests need. Started in a namespace the test made, or on loopback; killed on drop.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::fs::{chown, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::free_loopback_addr;
use crate::{netns::NetNs, users::NOBODY};

/// The variable `cargo xtask test` sets to the `sshd` it unpacked.
pub const NETWATCH_SSHD: &str = "NETWATCH_SSHD";
/// The variable through which netwatch's SFTP backend is given its `ssh` command line.
pub const NETWATCH_SSH_COMMAND: &str = "NETWATCH_SSH_COMMAND";
/// Where `cargo xtask test` unpacks it (Debian's openssh-server), relative to the workspace.
const INSTALLED: &str = "target/test-tools/openssh/root/usr/sbin/sshd";
/// In the test's own namespace nothing else listens, so any port is free; this one is clear of
/// the ports SeaweedFS takes there.
const NAMESPACE_PORT: u16 = 18_022;
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One `sshd` listening on `addr`, serving only SFTP to `nobody` with the instance's user key.
pub struct Sshd {
    addr: SocketAddr,
    child: Child,
    data: PathBuf,
    ssh_config: PathBuf,
    known_hosts: PathBuf,
    // Keys, configuration, the mirror's data and sshd's log: removed with it.
    state: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd as `nobody` in `ns` (`None`: this process's namespace, on loopback) on
    /// `ip`, and waits until its port accepts a connection.
    pub fn start(ns: Option<&NetNs>, ip: IpAddr) -> Self {
        let sshd = binary();
        let started = Instant::now();
        let state = tempfile::tempdir().expect("a directory for sshd's files");
        let dir = state.path();
        // sshd, as nobody, reads its configuration and keys from here.
        set_mode(dir, 0o755);
        let port = match ns {
            Some(_) => NAMESPACE_PORT,
            None => free_loopback_addr().port(),
        };
        let addr = SocketAddr::new(ip, port);

        let host = dir.join("host");
        keygen(&host);
        chown(&host, Some(NOBODY), Some(NOBODY)).expect("chown the host key to nobody");
        set_mode(&host, 0o600);
        let user = dir.join("user");
        keygen(&user);
        set_mode(&user, 0o600);
        // Never authorized: the key of the "wrong credential" tests.
        keygen(&dir.join("wrong_user"));
        set_mode(&dir.join("wrong_user"), 0o600);

        let data = dir.join("data");
        std::fs::create_dir(&data).expect("create the data directory");
        chown(&data, Some(NOBODY), Some(NOBODY)).expect("chown the data directory to nobody");

        let config = dir.join("sshd_config");
        write(&config, &server_config(dir, addr));
        let host_pub = std::fs::read_to_string(dir.join("host.pub")).expect("read host.pub");
        let known_hosts = dir.join("known_hosts");
        write(
            &known_hosts,
            &format!("[{}]:{} {}\n", addr.ip(), addr.port(), host_pub.trim()),
        );
        write(&dir.join("known_hosts.empty"), "");
        let ssh_config = dir.join("ssh_config");
        write(&ssh_config, &client_config(&user, &known_hosts));
        write(
            &dir.join("ssh_config.wrong_key"),
            &client_config(&dir.join("wrong_user"), &known_hosts),
        );
        write(
            &dir.join("ssh_config.unknown_host"),
            &client_config(&user, &dir.join("known_hosts.empty")),
        );

        let log = File::create(dir.join("sshd.log")).expect("create sshd.log");
        let mut command = match ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns.name(), "setpriv"]);
                command
            }
            None => Command::new("setpriv"),
        };
        let child = command
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} with setpriv: {e}", sshd.display()));
        let mut server = Sshd {
            addr,
            child,
            data,
            ssh_config,
            known_hosts,
            state,
        };
        server.wait_listening(ns);
        eprintln!(
            "sshd ready at {addr} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        server
    }

    /// `sftp://nobody@IP:PORT/DATA/PATH`: a mirror URL under the data directory.
    pub fn url(&self, path_under_data: &str) -> String {
        format!(
            "sftp://nobody@{}{}/{}",
            self.addr,
            self.data.display(),
            path_under_data.trim_start_matches('/')
        )
    }

    /// The environment a client needs to reach this server: an `ssh` command whose
    /// configuration names the user, the authorized key and a `known_hosts` with this host key.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        ssh_command_env(&self.ssh_config)
    }

    /// [`Self::client_env`], but with a key the server does not authorize.
    pub fn wrong_key_env(&self) -> Vec<(&'static str, String)> {
        ssh_command_env(&self.state.path().join("ssh_config.wrong_key"))
    }

    /// [`Self::client_env`], but with an empty `known_hosts`: the host key is unknown.
    pub fn unknown_host_env(&self) -> Vec<(&'static str, String)> {
        ssh_command_env(&self.state.path().join("ssh_config.unknown_host"))
    }

    /// The mirror's root, owned by `nobody`.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client configuration of [`Self::client_env`], for `ssh -F` or `sftp -F`.
    pub fn ssh_config_path(&self) -> &Path {
        &self.ssh_config
    }

    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts
    }

    /// sshd's own log (`-e`, LogLevel VERBOSE): each connection and why it was refused.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("sshd.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self, ns: Option<&NetNs>) {
        let addr = self.addr;
        let connects = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on sshd") {
                panic!("sshd exited at start ({status}); its log:\n{}", self.log());
            }
            let listening = match ns {
                Some(ns) => ns.run(connects),
                None => connects(),
            };
            if listening {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "sshd did not listen on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$NETWATCH_SSHD`, else where `cargo xtask test` unpacks it.
pub fn binary() -> PathBuf {
    let path = super::tool_path(NETWATCH_SSHD, INSTALLED);
    assert!(
        path.is_file(),
        "OpenSSH's sshd is not at {}: `cargo xtask test` unpacks it there (from Debian's \
         openssh-server, with `apt-get download` and `dpkg-deb -x`), or set {NETWATCH_SSHD} to \
         one",
        path.display()
    );
    // sshd re-executes itself for each connection, so it refuses to start from a relative path.
    std::path::absolute(&path).expect("an absolute path to sshd")
}

fn ssh_command_env(config: &Path) -> Vec<(&'static str, String)> {
    vec![(NETWATCH_SSH_COMMAND, format!("ssh -F {}", config.display()))]
}

/// Only public-key logins, only SFTP. `UsePAM yes` because without PAM sshd refuses nobody
/// as a locked account; `StrictModes no` because the authorized key is root's file.
fn server_config(dir: &Path, addr: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "Port {port}\n\
         ListenAddress {ip}\n\
         HostKey {dir}/host\n\
         PidFile none\n\
         AuthorizedKeysFile {dir}/user.pub\n\
         StrictModes no\n\
         UsePAM yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         Subsystem sftp internal-sftp\n\
         ForceCommand internal-sftp\n\
         LogLevel VERBOSE\n",
        port = addr.port(),
        ip = addr.ip(),
    )
}

/// The client's side: `nobody` with `key`, trusting only the hosts in `known_hosts`, never
/// asking anything.
fn client_config(key: &Path, known_hosts: &Path) -> String {
    format!(
        "Host *\n  \
           User nobody\n  \
           IdentityFile {}\n  \
           IdentitiesOnly yes\n  \
           UserKnownHostsFile {}\n  \
           GlobalKnownHostsFile /dev/null\n  \
           StrictHostKeyChecking yes\n  \
           BatchMode yes\n",
        key.display(),
        known_hosts.display()
    )
}

/// An ed25519 key pair without a passphrase at `path` and `path.pub`.
fn keygen(path: &Path) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running ssh-keygen (Debian's openssh-client): {e}"));
    assert!(
        output.status.success(),
        "ssh-keygen -f {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `text` readable by all: sshd reads its files as nobody.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    set_mode(path, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}
