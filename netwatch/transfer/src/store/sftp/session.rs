//! The SSH side of an `sftp://` mirror: the system's own `ssh` runs the server's `sftp`
//! subsystem, so the user's keys, agent, `~/.ssh/config` and `known_hosts` apply as they do
//! to `sftp` and `scp`. One session per mirror, started at its first request and again after
//! it is lost; requests share it, several in flight.

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use object_store::Error;
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    sync::Mutex,
};

use super::error::{lost, ssh_failed, STORE};

/// The command that runs ssh, split on whitespace (as git's `GIT_SSH_COMMAND`): for another
/// configuration file (`ssh -F FILE`) or options the mirror alone needs.
pub const SSH_COMMAND: &str = "NETWATCH_SSH_COMMAND";

/// Options netwatch always passes, before the user's configuration is read (so they win):
/// never prompt (a transfer has no one to answer), never accept an unknown or changed host
/// key, and notice a dead link within about 15 s so that the next request starts a new
/// session instead of waiting on TCP.
const OPTIONS: [&str; 8] = [
    "-oBatchMode=yes",
    "-oStrictHostKeyChecking=yes",
    "-oServerAliveInterval=5",
    "-oServerAliveCountMax=2",
    "-oConnectTimeout=10",
    "-oLogLevel=ERROR",
    "-oClearAllForwardings=yes",
    "-oRequestTTY=no",
];
/// How much of what ssh prints is kept for an error message.
const STDERR_KEPT: usize = 4096;
/// How long a failed ssh may take to exit and finish printing why.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Where to log in: from the URL; anything it leaves out comes from ssh's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Destination {
    /// `user@host:port`, as an error message names it.
    pub fn shown(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map_or(String::new(), |u| format!("{u}@"));
        let port = self.port.map_or(String::new(), |p| format!(":{p}"));
        format!("{user}{}{port}", self.host)
    }
}

/// A running `ssh -s HOST sftp` and the SFTP client on its pipes.
pub(super) struct Session {
    pub sftp: Sftp,
    /// Killed when the session is dropped.
    child: std::sync::Mutex<Child>,
    broken: AtomicBool,
}

impl Session {
    /// Marks the session lost: the next request starts another.
    pub fn lose(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Whether it can take another request: no request found it lost, and ssh has not exited
    /// (as it does when its keepalives go unanswered, perhaps while no request was there to
    /// see it: the first request after the network is back then starts a new session
    /// instead of failing on the old one).
    fn alive(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
            && self
                .child
                .lock()
                .map(|mut child| matches!(child.try_wait(), Ok(None)))
                .unwrap_or(false)
    }
}

/// The mirror's session, started when first needed.
pub(super) struct Sessions {
    destination: Destination,
    current: Mutex<Option<Arc<Session>>>,
}

impl Sessions {
    pub fn new(destination: Destination) -> Self {
        Self {
            destination,
            current: Mutex::new(None),
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The live session, or a new one. Concurrent callers wait for one start.
    pub async fn get(&self) -> Result<Arc<Session>, Error> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref().filter(|s| s.alive()) {
            return Ok(Arc::clone(session));
        }
        *current = None;
        let session = Arc::new(start(&self.destination).await?);
        *current = Some(Arc::clone(&session));
        Ok(session)
    }
}

/// The ssh command line for `destination`.
fn command(destination: &Destination) -> Command {
    let configured = std::env::var(SSH_COMMAND).unwrap_or_default();
    let mut words = configured.split_whitespace();
    let program = words.next().unwrap_or("ssh");
    let mut command = Command::new(program);
    command.args(words).args(OPTIONS);
    if let Some(port) = destination.port {
        command.arg(format!("-p{port}"));
    }
    if let Some(user) = &destination.user {
        command.arg(format!("-l{user}"));
    }
    // `--`: the host is never read as an option (the URL's check refuses a leading `-` too).
    command.args(["-s", "--", &destination.host, "sftp"]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn start(destination: &Destination) -> Result<Session, Error> {
    let shown = destination.shown();
    let mut command = command(destination);
    let mut child = command.spawn().map_err(|e| Error::Generic {
        store: STORE,
        source: format!(
            "cannot run {:?} for {shown}: {e} (install OpenSSH's client, or set {SSH_COMMAND})",
            command.as_std().get_program()
        )
        .into(),
    })?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(lost("ssh started without its pipes".to_string()));
    };
    let printed = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 1024];
        while let Ok(n @ 1..) = stderr.read(&mut buffer).await {
            kept.extend_from_slice(&buffer[..n]);
            if kept.len() > STDERR_KEPT {
                kept.drain(..kept.len() - STDERR_KEPT);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    match Sftp::new(stdin, stdout, SftpOptions::new()).await {
        Ok(sftp) => Ok(Session {
            sftp,
            child: std::sync::Mutex::new(child),
            broken: AtomicBool::new(false),
        }),
        Err(_) => {
            let status = tokio::time::timeout(EXIT_WAIT, child.wait())
                .await
                .ok()
                .and_then(Result::ok);
            let said = tokio::time::timeout(EXIT_WAIT, printed)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(ssh_failed(&shown, status, &said))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gives_user_and_port_and_the_host_is_never_an_option() {
        let destination = Destination {
            user: Some("build".into()),
            host: "mirror.example".into(),
            port: Some(2222),
        };
        let command = command(&destination);
        let args: Vec<_> = command
            .as_std()
            .get_args()
            .map(|a| a.to_str().unwrap())
            .collect();
        let tail = &args[args.len() - 6..];
        assert_eq!(
            tail,
            ["-p2222", "-lbuild", "-s", "--", "mirror.example", "sftp"]
        );
        assert!(args.contains(&"-oStrictHostKeyChecking=yes"));
        assert_eq!(destination.shown(), "build@mirror.example:2222");
    }
}
