//! The configuration file (`netwatch agent --config PATH`): every key optional, every default
//! written here and in docs/config.md, every mistake reported with the file, line and the form
//! the key expects.

mod error;
mod link;
mod read;
mod table;
#[cfg(test)]
mod tests;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    ebpf::XdpMode,
    state::Thresholds,
    transfer::{Compression, MirrorUrl},
};

pub use error::{ConfigError, Location};
pub use netwatch_agent::{daemon::AddressError, EndpointAddress};

/// Anyone may ask for the verdict: it reveals no more than `ip link` does.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;
/// Loopback only: the agent must not expose itself on the network.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9477);
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Mirrors without a `priority` come after those with one (lower is tried first).
pub const DEFAULT_MIRROR_PRIORITY: u32 = 100;

/// Everything the configuration file can set, with defaults for what it leaves out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `[agent]`
    pub agent: AgentSettings,
    /// `[interfaces]`: which interfaces the agent watches.
    pub interfaces: netwatch_agent::daemon::InterfaceSelection,
    /// `[socket]`
    pub socket: SocketSettings,
    /// `[metrics]`
    pub metrics: MetricsSettings,
    /// `[thresholds]`: the classifier's thresholds, durations written as strings.
    pub thresholds: Thresholds,
    /// `[cache]`: the local cache of `get`.
    pub cache: CacheSettings,
    /// `[[endpoint]]`, in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// `[[mirror]]`, in file order (`Config::mirrors_by_priority` sorts them).
    pub mirrors: Vec<MirrorConfig>,
}

/// The receive counter's hook, as the file and flags name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxHookName {
    Xdp,
    #[default]
    Tc,
}

/// `[agent]`: how the agent runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSettings {
    /// How often the agent logs a summary; `"0s"` in the file turns it off (`None`).
    pub report_interval: Option<Duration>,
    /// Which hook counts received packets: `"tc"` (default) or `"xdp"` (the default when
    /// only `xdp_mode` is set).
    pub rx_hook: RxHookName,
    /// Where XDP runs, when it is the hook: `"generic"` (default) or `"native"`.
    pub xdp_mode: XdpMode,
    /// Receive buffer of the netlink event socket, in bytes.
    pub netlink_event_buffer: usize,
    /// Whether the agent may ask the kernel to re-validate a neighbour on the local link
    /// when a client waits on an Unknown verdict or the host's traffic goes unanswered.
    pub evidence_on_demand: bool,
    /// The user the agent becomes once attached; `None`: `netwatch` if that user exists,
    /// else `nobody`.
    pub user: Option<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            report_interval: Some(DEFAULT_REPORT_INTERVAL),
            rx_hook: RxHookName::default(),
            xdp_mode: XdpMode::default(),
            netlink_event_buffer: netwatch_agent::netlink::DEFAULT_EVENT_BUFFER,
            evidence_on_demand: true,
            user: None,
        }
    }
}

/// `[socket]`: the Unix socket clients ask the agent through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSettings {
    /// `None` when the file does not say: the settings resolver picks then (`crate::settings`).
    pub path: Option<PathBuf>,
    /// Permission bits of the socket file (written as an octal string, `"0666"`).
    pub mode: u32,
    /// Name of the group that owns the socket; `None` leaves it root's.
    pub group: Option<String>,
}

impl Default for SocketSettings {
    fn default() -> Self {
        Self {
            path: None,
            mode: DEFAULT_SOCKET_MODE,
            group: None,
        }
    }
}

/// `[cache]`: the local cache `get` keeps ranges of packs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// The cap, in bytes: past it a get evicts the least recently used. `None`: no cap.
    pub max_size: Option<u64>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_size: Some(netwatch_transfer::DEFAULT_CACHE_MAX),
        }
    }
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The address to serve `/metrics` on: loopback, or any with `web_config`; `None` when
    /// `enabled = false`.
    pub listen: Option<SocketAddr>,
    /// Whether the kernel accounts the run time of every BPF program while the agent runs
    /// (BPF_ENABLE_STATS): host-wide, two clock reads per run of every program.
    pub program_costs: bool,
    /// The exporter's TLS and basic auth (`web_config`), read by the agent at start.
    pub web_config: Option<PathBuf>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: Some(DEFAULT_METRICS_LISTEN),
            program_costs: false,
            web_config: None,
        }
    }
}

/// One `[[endpoint]]`: a host:port whose reachability gets its own verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Unique; clients ask for `endpoint:NAME`.
    pub name: String,
    pub address: EndpointAddress,
    /// Whether to confirm it with a TCP connect every `probe_interval`.
    pub probe: bool,
    pub probe_interval: Duration,
    /// Shorter than `probe_interval`, so probes never overlap.
    pub probe_timeout: Duration,
}

/// One `[[mirror]]`: where `netwatch put` stores artifacts and `netwatch get` fetches them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorConfig {
    /// Unique; `--mirror NAME` picks it.
    pub name: String,
    /// A label for people, like "eu-central".
    pub region: Option<String>,
    /// Lower is tried first: the lowest is the primary. Ties keep file order.
    pub priority: u32,
    pub url: MirrorUrl,
    /// How `put` stores chunks there: `"auto"` (zstd, or raw on a link faster than the
    /// compressor), `"zstd"`, `"gzip"` (for a mirror that requires it) or `"none"`.
    pub compression: Compression,
    /// The `[[endpoint]]` whose verdict is the mirror's health: the `endpoint` key, else the
    /// endpoint at the host and port of an `http(s)://` URL, else none.
    pub endpoint: Option<String>,
}

impl Config {
    /// The mirrors, primary first.
    pub fn mirrors_by_priority(&self) -> Vec<&MirrorConfig> {
        let mut mirrors: Vec<&MirrorConfig> = self.mirrors.iter().collect();
        // A stable sort keeps file order among equal priorities.
        mirrors.sort_by_key(|m| m.priority);
        mirrors
    }

    /// Reads and checks the file at `path`, which must be a regular file of at most
    /// [`MAX_CONFIG_BYTES`] (opened without blocking, so a FIFO is refused, not waited on).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_regular_file(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            ConfigError::NotUtf8 {
                at: Location::of(path.to_path_buf(), &before, before.len()),
            }
        })?;
        Self::parse(&text, path)
    }

    /// An error for `key` of `[table]` in the file at `path`, at the value's place there: for
    /// a value that parsed but that its user finds wrong (a group this host lacks). `None` if
    /// the file cannot be read again or has no such key.
    pub fn invalid_value(
        path: &Path,
        table: &'static str,
        key: &'static str,
        expected: String,
    ) -> Option<ConfigError> {
        let text = std::fs::read_to_string(path).ok()?;
        read::invalid_value(&text, path, table, key, expected)
    }

    /// Checks `text`, naming `origin` in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        read::config(text, origin)
    }
}

/// The largest configuration file read: far beyond any real one, small enough to refuse a
/// wrong path (a log, an image) before reading it.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn read_regular_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::{
        io::Read,
        os::unix::fs::{FileTypeExt, OpenOptionsExt},
    };
    let read_error = |source: std::io::Error| {
        let path = path.to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound { path, source }
        } else {
            ConfigError::Read { path, source }
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let kind = meta.file_type();
    let not_a_file = |kind| ConfigError::NotAFile {
        path: path.to_path_buf(),
        kind,
    };
    if kind.is_dir() {
        return Err(not_a_file("a directory"));
    } else if kind.is_fifo() {
        return Err(not_a_file("a FIFO"));
    } else if kind.is_char_device() || kind.is_block_device() {
        return Err(not_a_file("a device"));
    } else if kind.is_socket() {
        return Err(not_a_file("a socket"));
    }
    // Checked on the open file, so a path swapped after the check changes nothing.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let why = if meta.uid() != 0 {
            Some(format!("owned by uid {}", meta.uid()))
        } else if meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && meta.gid() != 0) {
            Some(format!(
                "writable by others (mode {:o})",
                meta.mode() & 0o777
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ConfigError::Untrusted {
                path: path.to_path_buf(),
                why,
            });
        }
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: MAX_CONFIG_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}
