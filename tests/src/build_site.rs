//! A site of build hosts and mirrors, each in its own namespace: every host is joined to every
//! mirror by a veth pair of its own (so cutting one host's path to a mirror leaves the other
//! hosts' paths alone), has an uplink with the default route (so a cut mirror does not make
//! the host Down), and runs its own agent watching each mirror as an endpoint. Each mirror is
//! nginx on all its addresses, with a tbf cap on each of its links' egress.
//!
//! ```text
//!   host ns h: nwb<m> (ifindex 10+m) ---- nwh<h> (100+h) in mirror ns m, 198.18.x.0/24
//!              nwup0 (30) -- nwup1 (31): the default route
//! ```

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    agent::Agent,
    cli,
    mirrors::{add_default_route, add_uplink, join, TxCounters, UPLINK_INDEX},
    netns::NetNs,
    servers::nginx::Nginx,
    topology::{link, set_link_up},
};

/// nginx's port on every mirror address.
pub const PORT: u16 = 80;
const LOOPBACK_INDEX: u32 = 1;

/// One mirror.
pub struct SiteMirror {
    pub name: &'static str,
    nginx: Nginx,
    pub ns: NetNs,
    _root: tempfile::TempDir,
}

impl SiteMirror {
    pub fn root(&self) -> &Path {
        self.nginx.root()
    }
}

/// One host's link to one mirror.
pub struct HostLink {
    /// The ifindex of the host's end, in the host's namespace.
    pub host_index: u32,
    /// The ifindex of the mirror's end, in the mirror's namespace.
    pub mirror_index: u32,
    /// The mirror's address on this link.
    pub mirror_addr: Ipv4Addr,
}

/// One build host: its namespace, links, configuration and agent.
pub struct SiteHost {
    pub name: &'static str,
    pub links: Vec<HostLink>,
    config_text: String,
    agent: Option<Agent>,
    pub ns: NetNs,
    work: tempfile::TempDir,
}

/// How a host reaches mirrors: straight to nginx, or through something listening on another
/// port in each mirror's namespace (the bench's delay line).
#[derive(Clone, Copy, Debug)]
pub struct MirrorPort(pub u16);

impl SiteHost {
    pub fn config_path(&self) -> PathBuf {
        self.work.path().join("config.toml")
    }

    pub fn socket(&self) -> &Path {
        self.agent
            .as_ref()
            .expect("the host's agent was started")
            .socket()
    }

    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("the host's agent was started")
    }

    /// `netwatch ARGS --config FILE --socket SOCKET --log-format json` in the host's
    /// namespace.
    pub fn netwatch(&self, args: &[&str]) -> Command {
        let mut command = cli::netwatch(Some(&self.ns));
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--socket")
            .arg(self.socket())
            .args(["--log-format", "json"])
            .env("RUST_LOG", "netwatch=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Takes the host's end of its link to mirror `m` down.
    pub fn cut(&self, m: usize) {
        let index = self.links[m].host_index;
        self.ns.block_on(set_link_up(index, false));
    }

    pub fn restore(&self, m: usize) {
        let index = self.links[m].host_index;
        self.ns.block_on(set_link_up(index, true));
    }

    /// Takes every link of the host down, its uplink too: the agent calls the host Down.
    pub fn isolate(&self) {
        let indices: Vec<u32> = self.links.iter().map(|l| l.host_index).collect();
        self.ns.block_on(async move {
            set_link_up(UPLINK_INDEX, false).await;
            for index in indices {
                set_link_up(index, false).await;
            }
        });
    }

    /// Undoes [`SiteHost::isolate`], the default route included.
    pub fn reconnect(&self) {
        let indices: Vec<u32> = self.links.iter().map(|l| l.host_index).collect();
        self.ns.block_on(async move {
            for index in indices {
                set_link_up(index, true).await;
            }
            set_link_up(UPLINK_INDEX, true).await;
            add_default_route().await;
        });
    }
}

/// The site.
pub struct BuildSite {
    pub hosts: Vec<SiteHost>,
    pub mirrors: Vec<SiteMirror>,
}

impl BuildSite {
    /// Hosts named `hosts` and mirrors named `mirrors` (the first is the primary), every
    /// link capped at `rate_bits` on the mirror's side; hosts reach mirrors on `port`.
    pub fn start(
        hosts: &[&'static str],
        mirrors: &[&'static str],
        rate_bits: u64,
        port: MirrorPort,
    ) -> Self {
        let mirror_nss: Vec<NetNs> = mirrors.iter().map(|_| NetNs::new()).collect();
        let mut site_hosts = Vec::new();
        for (h, name) in hosts.iter().enumerate() {
            let ns = NetNs::new();
            ns.block_on(async {
                set_link_up(LOOPBACK_INDEX, true).await;
                add_uplink().await;
            });
            let links = mirror_nss
                .iter()
                .enumerate()
                .map(|(m, mirror_ns)| join_mirror(&ns, mirror_ns, h as u32, m as u32, rate_bits))
                .collect::<Vec<_>>();
            let config_text = config(mirrors, &links, port);
            let work = tempfile::tempdir().expect("a directory for a host's configuration");
            std::fs::write(work.path().join("config.toml"), &config_text)
                .expect("write the configuration file");
            site_hosts.push(SiteHost {
                name,
                links,
                config_text,
                agent: None,
                ns,
                work,
            });
        }
        let site_mirrors = mirrors
            .iter()
            .zip(mirror_nss)
            .map(|(name, ns)| {
                ns.block_on(set_link_up(LOOPBACK_INDEX, true));
                let root = tempfile::tempdir().expect("a directory for a mirror's objects");
                let addr = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT);
                let nginx = Nginx::start(Some(&ns), addr, root.path(), None);
                SiteMirror {
                    name,
                    nginx,
                    ns,
                    _root: root,
                }
            })
            .collect();
        BuildSite {
            hosts: site_hosts,
            mirrors: site_mirrors,
        }
    }

    /// Starts every host's agent and waits until each is ready.
    pub fn start_agents(&mut self) {
        for host in &mut self.hosts {
            let agent = Agent::start_with(&host.ns, &["--metrics", "off"], Some(&host.config_text));
            agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
            host.agent = Some(agent);
        }
    }

    pub fn host(&self, name: &str) -> &SiteHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host is named `{name}`"))
    }

    /// What mirror `m` has sent on all its links so far.
    pub fn sent(&self, m: usize) -> TxCounters {
        let indices: Vec<u32> = self.hosts.iter().map(|h| h.links[m].mirror_index).collect();
        self.mirrors[m].ns.block_on(async move {
            let mut total = TxCounters::default();
            for index in indices {
                for attribute in link(index).await.attributes {
                    if let rtnetlink::packet_route::link::LinkAttribute::Stats64(stats) = attribute
                    {
                        total.bytes += stats.tx_bytes;
                        total.packets += stats.tx_packets;
                    }
                }
            }
            total
        })
    }

    /// The names of a mirror's links in its namespace (the same in every mirror's).
    pub fn mirror_links(&self) -> Vec<String> {
        (0..self.hosts.len()).map(|h| format!("nwh{h}")).collect()
    }
}

/// The veth pair between host `h` and mirror `m`, its addresses and the mirror side's cap.
fn join_mirror(host: &NetNs, mirror: &NetNs, h: u32, m: u32, rate_bits: u64) -> HostLink {
    let (host_index, mirror_index) = (10 + m, 100 + h);
    let (_, mirror_addr) = join(
        host,
        mirror,
        (&format!("nwb{m}"), host_index),
        (&format!("nwh{h}"), mirror_index),
        rate_bits,
    );
    HostLink {
        host_index,
        mirror_index,
        mirror_addr,
    }
}

/// A host's configuration: an endpoint and a mirror per link, the first the primary.
fn config(names: &[&str], links: &[HostLink], port: MirrorPort) -> String {
    let mut text = String::new();
    for (name, link) in names.iter().zip(links) {
        text += &format!(
            "[[endpoint]]\nname = \"{name}\"\naddress = \"{}:{}\"\n\n",
            link.mirror_addr, port.0
        );
    }
    for (priority, (name, link)) in names.iter().zip(links).enumerate() {
        text += &format!(
            "[[mirror]]\nname = \"{name}\"\npriority = {}\nurl = \"http://{}:{}/\"\n\n",
            priority + 1,
            link.mirror_addr,
            port.0
        );
    }
    text
}
