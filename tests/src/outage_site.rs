//! The original design's long transfer, with a real mirror: a get from an SFTP (sshd) or Azure
//! (Azurite) mirror whose one link goes down in the middle and comes back. The mirror runs in
//! namespace A, the CLI and the agent in B; the mirror's address is an `[[endpoint]]`, so the
//! agent's verdict on it is the mirror's health. Taking A's end of the veth down drops B's
//! carrier, as a cable pulled at the far side would.
//!
//! ```text
//!   B: agent, netwatch get   nwb0 ---- nwa0 (tbf cap, optional)   A: sshd :18022 or Azurite :10000
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    agent::Agent,
    cli::{self, Ran},
    servers::{azurite::Azurite, sshd::Sshd},
    topology::{set_link_up, Pair},
};

const LOOPBACK_INDEX: u32 = 1;
const AZURITE_PORT: u16 = 10_000;

/// Which kind of mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sftp,
    Azure,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sftp => "sftp",
            Self::Azure => "azure",
        }
    }
}

enum Server {
    Sftp(Sshd),
    Azure(Azurite),
}

/// The two namespaces, the mirror in A, the agent in B, and the configuration naming both.
pub struct OutageSite {
    pub pair: Pair,
    server: Server,
    agent: Agent,
    config: PathBuf,
    work: tempfile::TempDir,
}

/// One get through the outage.
#[derive(Debug)]
pub struct OutageGet {
    pub ran: Ran,
    /// From the get's start to the cut.
    pub cut_after: Duration,
    /// From the link's return to the get's end (none: it ended before the link came back).
    pub finished_after_restore: Option<Duration>,
    pub elapsed: Duration,
}

impl OutageGet {
    pub fn summary(&self) -> Option<Value> {
        self.ran
            .ok()
            .then(|| self.ran.json())
            .filter(|s| s.is_object())
    }
}

impl OutageSite {
    /// Starts the mirror in A, A's egress capped at `rate_bits` a second if given, and the
    /// agent in B, and waits until the agent is ready.
    pub fn start(backend: Backend, rate_bits: Option<u64>) -> Self {
        let pair = Pair::new();
        pair.default_route_via_a();
        pair.a.block_on(set_link_up(LOOPBACK_INDEX, true));
        if let Some(rate) = rate_bits {
            crate::mirrors::cap_egress(&pair.a, &pair.a_if, rate);
        }
        let ip = IpAddr::V4(pair.a_v4);
        let (server, addr, url) = match backend {
            Backend::Sftp => {
                let sshd = Sshd::start(Some(&pair.a), ip);
                let (addr, url) = (sshd.addr(), sshd.url("outage"));
                (Server::Sftp(sshd), addr, url)
            }
            Backend::Azure => {
                let azurite = Azurite::start_at(Some(&pair.a), SocketAddr::new(ip, AZURITE_PORT));
                let (addr, url) = (azurite.addr(), azurite.url("outage"));
                (Server::Azure(azurite), addr, url)
            }
        };
        let text = format!(
            "[[endpoint]]\nname = \"mirror\"\naddress = \"{addr}\"\n\n\
             [[mirror]]\nname = \"mirror\"\nurl = \"{url}\"\nendpoint = \"mirror\"\n"
        );
        let work = tempfile::tempdir().expect("a directory for the outage site");
        let config = work.path().join("config.toml");
        std::fs::write(&config, &text).expect("write the configuration");
        let agent = Agent::start_with(&pair.b, &["--metrics", "off"], Some(&text));
        agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
        OutageSite {
            pair,
            server,
            agent,
            config,
            work,
        }
    }

    /// A directory of the site's, removed with it.
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match &self.server {
            Server::Sftp(sshd) => sshd.client_env(),
            Server::Azure(azurite) => azurite.client_env(),
        }
    }

    /// `netwatch ARGS --config C --json` in B, with the agent's socket or (`aware` false) a
    /// socket no agent serves: plain backoff.
    fn netwatch(&self, aware: bool, args: &[&str]) -> std::process::Command {
        let socket = match aware {
            true => self.agent.socket().to_path_buf(),
            false => self.work.path().join("no-agent.sock"),
        };
        let mut command = cli::netwatch(Some(&self.pair.b));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(socket)
            .arg("--json")
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `netwatch put FILE KEY --compression none`, which must succeed: its summary.
    pub fn put(&self, file: &Path, key: &str, cache: &Path) -> Value {
        let args = [
            "put",
            path_str(file),
            key,
            "--compression",
            "none",
            "--cache",
            path_str(cache),
        ];
        let ran = Ran::bounded(
            self.netwatch(true, &args),
            args.iter().map(|a| a.to_string()).collect(),
        );
        assert!(ran.ok(), "the put failed: {}", ran.describe());
        ran.json()
    }

    /// Takes A's end of the link down, or brings it up again.
    pub fn set_link(&self, up: bool) {
        self.pair.a.block_on(set_link_up(self.pair.a_index, up));
    }

    /// `netwatch get KEY OUT`, the link cut `cut_after` into it for `outage`; waits for its
    /// end (bounded by the CLI's run limit) and returns what it did.
    pub fn get_through_outage(
        &self,
        key: &str,
        out: &Path,
        cache: &Path,
        aware: bool,
        cut_after: Duration,
        outage: Duration,
    ) -> OutageGet {
        let args = ["get", key, path_str(out), "--cache", path_str(cache)];
        let shown: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let command = self.netwatch(aware, &args);
        let started = Instant::now();
        let get = std::thread::spawn(move || {
            let ran = Ran::bounded(command, shown);
            (ran, Instant::now())
        });
        std::thread::sleep(cut_after);
        self.set_link(false);
        std::thread::sleep(outage);
        self.set_link(true);
        let restored = Instant::now();
        let (ran, ended) = get.join().expect("the get's thread");
        OutageGet {
            ran,
            cut_after,
            finished_after_restore: ended.checked_duration_since(restored),
            elapsed: ended - started,
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
