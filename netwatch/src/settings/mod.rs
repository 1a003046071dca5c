//! Where the commands' settings come from, resolved here once for every subcommand, in one
//! order (docs/config.md, "Where settings come from"):
//!
//! | setting     | 1. flag    | 2. environment       | 3. config file    | 4. default                                   |
//! |-------------|------------|----------------------|-------------------|----------------------------------------------|
//! | config file | `--config` | `NETWATCH_CONFIG`    | -                 | `/etc/netwatch.toml` if it exists, else none |
//! | socket      | `--socket` | `NETWATCH_SOCKET`    | `[socket] path`   | agent `--netns NAME`: `/run/netwatch/netns-NAME.sock` (also where 2 or 3 name the host's default); else `/run/netwatch/netwatch.sock` |
//! | cache       | `--cache`  | `NETWATCH_CACHE_DIR` | -                 | `$XDG_CACHE_HOME/netwatch` (if absolute), else `$HOME/.cache/netwatch` |
//!
//! An empty environment variable counts as unset.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use netwatch_client::paths::{env_vars, DEFAULT_CONFIG_PATH, DEFAULT_SOCKET_PATH};

use crate::config::{Config, ConfigError};

/// What a command's flags say about where things are; `None` where it has no such flag or it
/// was not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathFlags {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    /// The agent's `--netns NAME`: its socket's default depends on it.
    pub netns: Option<String>,
}

/// What the process finds around it: the environment variables the resolver reads, and where
/// the system-wide configuration file is looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub socket: Option<OsString>,
    pub config: Option<OsString>,
    pub cache_dir: Option<OsString>,
    pub xdg_cache_home: Option<OsString>,
    pub home: Option<OsString>,
    /// Read when it exists and neither flag nor environment names a file.
    pub system_config: PathBuf,
}

impl Environment {
    /// This process's environment.
    pub fn of_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Self {
            socket: var(env_vars::NETWATCH_SOCKET),
            config: var(env_vars::NETWATCH_CONFIG),
            cache_dir: var(env_vars::NETWATCH_CACHE_DIR),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
            system_config: PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }
}

/// Every command's settings, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    /// What it says (every default when none was read).
    pub config: Config,
    /// The agent's socket: where the agent listens and where clients ask.
    pub socket: PathBuf,
    /// The chunk cache and mirror scoreboard; `None` without flag, environment or home.
    pub cache: Option<PathBuf>,
}

/// Resolves `flags` against `env` in the order of the module's table. Fails only on a
/// configuration file that cannot be read or is wrong.
pub fn resolve(flags: &PathFlags, env: &Environment) -> Result<Settings, ConfigError> {
    let config_file = config_file(flags, env);
    let config = match &config_file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // For an agent in another namespace, the host's default socket (the example file spells
    // it out) names "the default", which there is that namespace's own: taking it would
    // collide with the host's agent.
    let not_the_host_default =
        |path: &PathBuf| flags.netns.is_none() || path.as_os_str() != DEFAULT_SOCKET_PATH;
    let socket = flags
        .socket
        .clone()
        .or_else(|| {
            env.socket
                .clone()
                .map(PathBuf::from)
                .filter(not_the_host_default)
        })
        .or_else(|| config.socket.path.clone().filter(not_the_host_default))
        .unwrap_or_else(|| match &flags.netns {
            Some(netns) => PathBuf::from(format!("/run/netwatch/netns-{netns}.sock")),
            None => PathBuf::from(DEFAULT_SOCKET_PATH),
        });
    let cache = flags
        .cache
        .clone()
        .or_else(|| env.cache_dir.clone().map(PathBuf::from))
        .or_else(|| {
            // The XDG spec: a relative XDG_CACHE_HOME is ignored.
            let xdg = (env.xdg_cache_home.clone().map(PathBuf::from)).filter(|p| p.is_absolute());
            let home = || env.home.clone().map(|home| Path::new(&home).join(".cache"));
            xdg.or_else(home).map(|root| root.join("netwatch"))
        });
    Ok(Settings {
        config_file,
        config,
        socket,
        cache,
    })
}

fn config_file(flags: &PathFlags, env: &Environment) -> Option<PathBuf> {
    flags
        .config
        .clone()
        .or_else(|| env.config.clone().map(PathBuf::from))
        .or_else(|| {
            let system = &env.system_config;
            // `exists` follows symlinks: a dangling one is "no file", like no file at all.
            system.exists().then(|| system.clone())
        })
}

#[cfg(test)]
mod tests;
