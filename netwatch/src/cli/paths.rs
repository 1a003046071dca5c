//! The flags every subcommand takes for where things are; `crate::settings` resolves them
//! with the environment and the configuration file, in one order for all.

use std::path::PathBuf;

use super::Command;
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
            Command::Put(args) => PathFlags {
                cache: args.cache.clone(),
                ..args.common.paths.flags()
            },
            Command::Get(args) => PathFlags {
                cache: args.cache.clone(),
                ..args.common.paths.flags()
            },
            Command::Mirrors(args) => PathFlags {
                cache: args.cache.clone(),
                ..args.common.paths.flags()
            },
            Command::Sync(args) => args.common.paths.flags(),
        }
    }
}
