//! Where netwatch's files are by default, and every environment variable it reads, each
//! defined once. Which one wins when several are given is the `netwatch` binary's settings
//! resolver's business (docs/config.md, "Where settings come from").

use std::path::PathBuf;

/// The agent's socket when nothing else names one.
pub const DEFAULT_SOCKET_PATH: &str = "/run/netwatch/netwatch.sock";
/// The configuration file read when it exists and nothing else names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netwatch.toml";

/// Every environment variable netwatch reads.
pub mod env_vars {
    /// Log filter, e.g. `debug` or `netwatch=debug` (tracing's EnvFilter syntax).
    pub const RUST_LOG: &str = "RUST_LOG";
    /// `text` or `json`; the `--log-format` flag wins.
    pub const NETWATCH_LOG_FORMAT: &str = "NETWATCH_LOG_FORMAT";
    /// The agent's socket; the `--socket` flag wins.
    pub const NETWATCH_SOCKET: &str = "NETWATCH_SOCKET";
    /// The configuration file; the `--config` flag wins.
    pub const NETWATCH_CONFIG: &str = "NETWATCH_CONFIG";
    /// The user the agent runs as, besides root, that clients trust to serve the socket.
    pub const NETWATCH_AGENT_USER: &str = "NETWATCH_AGENT_USER";
    /// The local chunk cache of `netwatch get`; the `--cache` flag wins.
    pub const NETWATCH_CACHE_DIR: &str = "NETWATCH_CACHE_DIR";
}

/// The agent's socket for a program that has no settings of its own: `NETWATCH_SOCKET` if
/// set, else [`DEFAULT_SOCKET_PATH`]. (The `netwatch` commands also read `--socket` and the
/// configuration file.)
pub fn default_socket_path() -> PathBuf {
    std::env::var_os(env_vars::NETWATCH_SOCKET)
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH), PathBuf::from)
}
