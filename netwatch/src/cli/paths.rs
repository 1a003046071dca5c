//! The flags every subcommand takes for where things are; `crate::settings` resolves them
//! with the environment and the configuration file, in one order for all.

use std::path::PathBuf;

use super::{transfer::CopyArgs, Command};
use crate::settings::PathFlags;

#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// The configuration file (docs/config.md). [default: NETWATCH_CONFIG, else
    /// /etc/netwatch.toml if it exists, else none: every built-in default]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The agent's Unix socket: where the agent listens and clients ask. [default:
    /// NETWATCH_SOCKET, else the config file's [socket] path, else
    /// /run/netwatch/netwatch.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl PathArgs {
    fn flags(&self) -> PathFlags {
        PathFlags {
            config: self.config.clone(),
            socket: self.socket.clone(),
            ..PathFlags::default()
        }
    }
}

/// `--cache`, for the commands that keep the mirror scoreboard: put, get and mirrors.
#[derive(Debug, clap::Args)]
pub struct CacheArg {
    /// The cache directory: the mirror scoreboard (each mirror's latency, bandwidth and hit
    /// rate) and the chunks get keeps. [default: NETWATCH_CACHE_DIR, else
    /// $XDG_CACHE_HOME/netwatch, else ~/.cache/netwatch]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

impl CacheArg {
    fn flags(&self, paths: &PathArgs) -> PathFlags {
        PathFlags {
            cache: self.cache.clone(),
            ..paths.flags()
        }
    }
}

impl CopyArgs {
    fn flags(&self) -> PathFlags {
        self.cache.flags(&self.common.paths)
    }
}

impl Command {
    /// What this command's flags say about where things are.
    pub fn path_flags(&self) -> PathFlags {
        match self {
            Command::Agent(args) => PathFlags {
                netns: args.netns.clone(),
                ..args.paths.flags()
            },
            Command::Status(args) => args.paths.flags(),
            Command::Watch(args) => args.paths.flags(),
            Command::WaitOnline(args) => args.paths.flags(),
            Command::Check(args) => args.paths.flags(),
            Command::Put(args) => args.copy.flags(),
            Command::Get(args) => args.copy.flags(),
            Command::Mirrors(args) => args.cache.flags(&args.common.paths),
            Command::Sync(args) => args.common.paths.flags(),
            Command::Cache(args) => args.cache.flags(&args.common.paths),
            Command::Gc(args) => args.common.paths.flags(),
            Command::CacheServer(args) => args.cache.flags(&args.common.paths),
            Command::Manpages(_) => PathFlags::default(),
        }
    }
}
