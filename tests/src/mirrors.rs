//! Three HTTP mirrors for transfer tests: a client namespace joined to three mirror
//! namespaces, each by its own veth pair with a tbf cap on the mirror's egress, nginx serving
//! a directory of the test's in each; the configuration file that names them; and the
//! `netwatch` CLI run in the client namespace, with its JSON summary and log read back.
//!
//! ```text
//!                 nwc1 (11) ---- nwm1 (21)  primary    tbf rates[0]  nginx :80
//!   client ns     nwc2 (12) ---- nwm2 (22)  secondary  tbf rates[1]  nginx :80
//!  (agent, CLI)   nwc3 (13) ---- nwm3 (23)  tertiary   tbf rates[2]  nginx :80
//!                 nwup0 (30) -- nwup1 (31), both in the client: the default route, so no
//!                 mirror's link is the host's
//! ```
//!
//! Every mirror is an `[[endpoint]]` at its own address, linked to its `[[mirror]]` by the
//! URL, so the agent in the client namespace gives each mirror a verdict of its own.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rtnetlink::{packet_route::link::LinkAttribute, RouteMessageBuilder};
use serde_json::Value;

mod summary;

pub use summary::{
    cached_chunks, CachedChunk, Run, StoredAt, StoredChunk, StoredManifest, Summary, Tally,
};

use crate::{
    agent::Agent,
    cli::{self, Ran},
    netns::NetNs,
    servers::nginx::Nginx,
    topology::{add_address, add_veth, connect, link, link_index, move_link, set_link_up},
};

/// The mirrors' names, best first: `priority` 1, 2 and 3.
pub const NAMES: [&str; 3] = ["primary", "secondary", "tertiary"];
/// The port nginx listens on in each mirror namespace.
const PORT: u16 = 80;
/// Ifindex of the default route's link in the client namespace (its peer has the next).
pub(crate) const UPLINK_INDEX: u32 = 30;
/// `lo` is always ifindex 1 in a new namespace.
const LOOPBACK_INDEX: u32 = 1;

/// One mirror: its namespace, its link to the client, its cap and its server.
pub struct Mirror {
    pub name: &'static str,
    /// `http://ADDR/`, as in the configuration.
    pub url: String,
    pub addr: SocketAddr,
    /// The tbf cap on the mirror's egress (what a get receives), in bits per second.
    pub rate_bits_per_sec: u64,
    /// The veth end in the client namespace: what [`ThreeMirrors::cut`] takes down.
    pub client_if: String,
    pub client_index: u32,
    /// The veth end in the mirror's namespace, which carries the tbf qdisc.
    pub mirror_index: u32,
    // Dropped in this order: the server, then its namespace, then its files.
    nginx: Nginx,
    pub ns: NetNs,
    _root: tempfile::TempDir,
}

impl Mirror {
    /// The directory nginx serves: the mirror's objects, to inspect or damage.
    pub fn root(&self) -> &Path {
        self.nginx.root()
    }

    /// The manifest of `key` as stored on this mirror.
    pub fn manifest(&self, key: &str) -> StoredManifest {
        let path = self.root().join("manifests").join(format!("{key}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the manifest {}: {e}", path.display()));
        StoredManifest::parse(&text, &path)
    }

    /// Bytes the mirror has sent on its link so far (IFLA_STATS64 tx_bytes, with headers).
    pub fn sent(&self) -> TxCounters {
        let index = self.mirror_index;
        self.ns.block_on(async move {
            link(index)
                .await
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::Stats64(stats) => Some(TxCounters {
                        bytes: stats.tx_bytes,
                        packets: stats.tx_packets,
                    }),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("link {index} has no IFLA_STATS64"))
        })
    }
}

/// A link's transmit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub bytes: u64,
    pub packets: u64,
}

/// The topology, with the configuration file the agent and the CLI share.
pub struct ThreeMirrors {
    pub mirrors: Vec<Mirror>,
    pub client: NetNs,
    config_text: String,
    /// The configuration file, and a socket path no agent serves.
    work: tempfile::TempDir,
}

impl ThreeMirrors {
    /// Builds the topology: `rates` are the tbf caps of the primary, secondary and tertiary
    /// in bits per second (make the primary fastest, so that it also ranks first).
    pub fn start(rates: [u64; 3]) -> Self {
        let client = NetNs::new();
        client.block_on(add_uplink());
        let mirrors = NAMES
            .iter()
            .zip(rates)
            .enumerate()
            .map(|(i, (name, rate))| start_mirror(&client, name, i as u32 + 1, rate))
            .collect::<Vec<_>>();
        let config_text = config(&mirrors);
        let work = tempfile::tempdir().expect("a directory for the mirrors' configuration");
        std::fs::write(work.path().join("config.toml"), &config_text)
            .expect("write the configuration file");
        ThreeMirrors {
            mirrors,
            client,
            config_text,
            work,
        }
    }

    /// The mirror named `name` (one of [`NAMES`]).
    pub fn mirror(&self, name: &str) -> &Mirror {
        self.mirrors
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no mirror is named `{name}`: the mirrors are {NAMES:?}"))
    }

    /// The configuration: three `[[endpoint]]` and three `[[mirror]]` tables.
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    pub fn config_path(&self) -> PathBuf {
        self.work.path().join("config.toml")
    }

    /// A socket path no agent serves: for a CLI run that must not find one (the default
    /// socket may belong to an agent of the host's).
    pub fn no_agent(&self) -> PathBuf {
        self.work.path().join("no-agent.sock")
    }

    /// Starts the agent in the client namespace with the configuration, and waits until it
    /// is ready.
    pub fn start_agent(&self) -> Agent {
        let agent = Agent::start_with(&self.client, &["--metrics", "off"], Some(&self.config_text));
        agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
        agent
    }

    /// Takes the client's end of `name`'s link down: the mirror is unreachable, and the
    /// agent sees it at once.
    pub fn cut(&self, name: &str) {
        let index = self.mirror(name).client_index;
        self.client.block_on(set_link_up(index, false));
    }

    /// Brings the client's end of `name`'s link up again.
    pub fn restore(&self, name: &str) {
        let index = self.mirror(name).client_index;
        self.client.block_on(set_link_up(index, true));
    }

    /// `netwatch ARGS --config FILE --socket SOCKET --log-format json` in the client
    /// namespace, with debug logs from netwatch (ARGS start with the subcommand).
    pub fn netwatch(&self, socket: &Path, args: &[&str]) -> Command {
        let mut command = cli::netwatch(Some(&self.client));
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--socket")
            .arg(socket)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "netwatch=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `netwatch put FILE KEY --mirror MIRROR --cache CACHE --compression none --json`.
    /// Raw chunks, so that the bytes moved are the artifact's own (test data is random, and
    /// a debug build's zstd would only slow the test).
    pub fn put(&self, socket: &Path, file: &Path, key: &str, mirror: &str, cache: &Path) -> Run {
        let file = path_str(file);
        let cache = path_str(cache);
        let args = [
            "put",
            file,
            key,
            "--mirror",
            mirror,
            "--cache",
            cache,
            "--compression",
            "none",
            "--json",
        ];
        self.run(socket, &args)
    }

    /// `netwatch get KEY OUT --cache CACHE --json`.
    pub fn get(&self, socket: &Path, key: &str, out: &Path, cache: &Path) -> Run {
        self.run(socket, &get_args(key, out, cache))
    }

    /// `netwatch ARGS` bounded in time, which must succeed: its summary and log.
    fn run(&self, socket: &Path, args: &[&str]) -> Run {
        let shown = args.iter().map(|a| a.to_string()).collect();
        Run::finished(&Ran::bounded(self.netwatch(socket, args), shown))
    }

    /// `netwatch mirrors --cache CACHE --json`: measures the mirrors, writes the figures to
    /// the scoreboard in `cache` (a get with that cache within 10 minutes ranks by them), and
    /// returns the mirrors' names in the order a get would try them.
    pub fn rank(&self, socket: &Path, cache: &Path) -> Vec<String> {
        let args = ["mirrors", "--cache", path_str(cache), "--json"];
        let shown = args.iter().map(|a| a.to_string()).collect();
        let rows: Value = Ran::bounded(self.netwatch(socket, &args), shown).json();
        rows.as_array()
            .unwrap_or_else(|| panic!("netwatch mirrors: not an array: {rows}"))
            .iter()
            .map(|row| {
                row["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("netwatch mirrors: a row without a name: {row}"))
                    .to_string()
            })
            .collect()
    }

    /// The same get, started in the background: kill it, or wait with [`Run::finished`].
    pub fn spawn_get(&self, socket: &Path, key: &str, out: &Path, cache: &Path) -> Child {
        self.netwatch(socket, &get_args(key, out, cache))
            .spawn()
            .unwrap_or_else(|e| panic!("starting netwatch get {key}: {e}"))
    }
}

fn get_args<'a>(key: &'a str, out: &'a Path, cache: &'a Path) -> [&'a str; 6] {
    [
        "get",
        key,
        path_str(out),
        "--cache",
        path_str(cache),
        "--json",
    ]
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A veth pair nwup0 (ifindex 30) <-> nwup1 (31), both ends in the client namespace, with
/// the client's default route on nwup0: the host has a way out that no mirror's link is, so
/// cutting a mirror demotes that mirror and does not make the host Down (which would make
/// every transfer wait instead of moving on). (A dummy link would do, but this kernel has no
/// dummy driver.)
pub(crate) async fn add_uplink() {
    add_veth("nwup0", UPLINK_INDEX, "nwup1", UPLINK_INDEX + 1).await;
    set_link_up(UPLINK_INDEX + 1, true).await;
    set_link_up(UPLINK_INDEX, true).await;
    add_default_route().await;
}

/// The client's default route, on nwup0 (ifindex 30).
pub(crate) async fn add_default_route() {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(UPLINK_INDEX)
        .build();
    connect()
        .route()
        .add(route)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("adding the default route via nwup0: {e}"));
}

/// Mirror `n` (1, 2, 3): a namespace, the veth pair nwc<n> (ifindex 10+n) in the client <->
/// nwm<n> (20+n) in the mirror, a /24 of its own, the tbf cap, and nginx.
fn start_mirror(client: &NetNs, name: &'static str, n: u32, rate: u64) -> Mirror {
    let ns = NetNs::new();
    let (client_if, mirror_if) = (format!("nwc{n}"), format!("nwm{n}"));
    let (client_index, mirror_index) = (10 + n, 20 + n);
    let (_, mirror_ip) = join(
        client,
        &ns,
        (&client_if, client_index),
        (&mirror_if, mirror_index),
        rate,
    );
    // nginx's own readiness check connects to the mirror's address from inside.
    ns.block_on(set_link_up(LOOPBACK_INDEX, true));
    let root = tempfile::tempdir().expect("a directory for the mirror's objects");
    let addr = SocketAddr::new(mirror_ip.into(), PORT);
    let nginx = Nginx::start(Some(&ns), addr, root.path(), None);
    Mirror {
        name,
        url: nginx.url(),
        addr,
        rate_bits_per_sec: rate,
        client_if,
        client_index,
        mirror_index,
        nginx,
        ns,
        _root: root,
    }
}

/// A veth pair from `near` (its end named and numbered `near_if`) to `far` (`far_if`), a
/// /24 of its own (.1 near, .2 far), both ends up, and `far`'s end capped at `rate` bits a
/// second by tbf (what `near` receives). Returns the two addresses.
pub(crate) fn join(
    near: &NetNs,
    far: &NetNs,
    (near_if, near_index): (&str, u32),
    (far_if, far_index): (&str, u32),
    rate: u64,
) -> (Ipv4Addr, Ipv4Addr) {
    // 198.18.0.0/15 holds 512 /24s; the block comes from next_id, as in topology::Pair.
    let block = crate::next_id() % 512;
    let v4 = |host| Ipv4Addr::new(198, 18 + (block / 256) as u8, (block % 256) as u8, host);
    let ns_file = far.open();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&ns_file);
    near.block_on(async {
        add_veth(near_if, near_index, far_if, far_index).await;
        let peer = link_index(far_if).await.expect("the new veth peer");
        move_link(peer, fd).await;
        add_address(near_index, v4(1).into(), 24).await;
        set_link_up(near_index, true).await;
    });
    drop(ns_file);
    far.block_on(async {
        let index = link_index(far_if)
            .await
            .expect("the veth peer was moved into the far namespace");
        assert_eq!(index, far_index, "the far veth end kept its ifindex");
        add_address(index, v4(2).into(), 24).await;
        set_link_up(index, true).await;
    });
    cap_egress(far, far_if, rate);
    (v4(1), v4(2))
}

/// Caps what leaves `dev` in `ns` at `rate` bits a second, with tbf.
pub(crate) fn cap_egress(ns: &NetNs, dev: &str, rate: u64) {
    // tbf needs a burst of at least rate/HZ to reach its rate: 20 ms worth, at least 32 KiB.
    let burst = (rate / 8 / 50).max(32 * 1024);
    ns.exec_ok(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &format!("{rate}bit"),
            "burst",
            &burst.to_string(),
            "latency",
            "50ms",
        ],
    );
}

/// The configuration file: an `[[endpoint]]` per mirror address, and the `[[mirror]]`
/// tables, linked to their endpoints by URL (host and port).
fn config(mirrors: &[Mirror]) -> String {
    let mut text = String::new();
    for mirror in mirrors {
        text.push_str(&format!(
            "[[endpoint]]\nname = \"{}\"\naddress = \"{}\"\n\n",
            mirror.name, mirror.addr
        ));
    }
    for (priority, mirror) in mirrors.iter().enumerate() {
        text.push_str(&format!(
            "[[mirror]]\nname = \"{}\"\npriority = {}\nurl = \"{}\"\n\n",
            mirror.name,
            priority + 1,
            mirror.url
        ));
    }
    text
}
