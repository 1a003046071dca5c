//! The `netwatch` command line: argument types (clap lives only here) and logging set-up.

mod agent;
mod check;
mod format;
mod logging;
mod manpages;
mod paths;
mod progress;
mod remote;
mod status;
mod sync;
mod transfer;
mod wait_online;
mod watch;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use agent::{AgentArgs, SettingsError};

pub use check::{run_check, CheckArgs, CHECK_OK, CHECK_PROBLEM, CHECK_UNKNOWN};
pub use logging::init as init_logging;
pub use manpages::{run_manpages, ManpagesArgs};
pub use paths::{CacheArg, PathArgs};
pub use remote::CommandError;
pub use status::{run_status, StatusArgs};
pub use sync::{run_sync, SyncArgs};
pub use transfer::{
    run_cache, run_cache_server, run_gc, run_get, run_mirrors, run_put, CacheArgs, CacheServerArgs,
    GcArgs, GetArgs, MirrorsArgs, PutArgs,
};
pub use wait_online::{
    run_wait_online, WaitOnlineArgs, EXIT_DOWN, EXIT_ERROR, EXIT_TIMEOUT, EXIT_UP,
};
pub use watch::{run_watch, WatchArgs};

pub use netwatch_client::paths::env_vars;

/// Tells programs on this host, within milliseconds, whether the network is Up, Degraded or Down.
#[derive(Debug, Parser)]
#[command(name = "netwatch", version, propagate_version = true)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = env_vars::NETWATCH_LOG_FORMAT)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host agent (as root): load the kernel programs, follow link, address and route
    /// changes, count traffic per interface. It sends no network traffic of its own.
    Agent(AgentArgs),
    /// Show the verdict of every link and endpoint, and the host's, from the running agent.
    Status(StatusArgs),
    /// Follow verdict changes as they happen: one line per changed subject.
    Watch(WatchArgs),
    /// Wait until the host (or an endpoint) is Up: exit 0 then, 3 at the timeout, 4 if Down.
    WaitOnline(WaitOnlineArgs),
    /// One look at the verdict, for node-problem-detector and other checkers: exit 0 if Up,
    /// 1 if Down or Degraded, 2 if unknown; one line on stdout.
    Check(CheckArgs),
    /// Upload a file to a mirror as KEY: only the chunks the mirror lacks (docs/transfer.md).
    Put(PutArgs),
    /// Fetch KEY into OUT: only the chunks the local cache lacks, falling back across mirrors.
    Get(GetArgs),
    /// Measure every mirror, listed in the order a get tries them: latency, bandwidth, score,
    /// health (from the agent) and hit rate.
    Mirrors(MirrorsArgs),
    /// Copy the chunks and manifests mirrors lack from each other: the newest version of each
    /// key wins, and every chunk is checked before it is written.
    Sync(SyncArgs),
    /// Show what the local cache of get holds against its cap ([cache] max_size), and with
    /// --prune evict the least recently used down to it.
    Cache(CacheArgs),
    /// Serve a build cache on loopback for ccache, sccache and Bazel (their HTTP remote caches): this
    /// host's store first, then the mirrors, a miss answered by a deadline so a slow or cut
    /// mirror never stalls a build; stores are written back to every mirror
    /// (docs/build-cache.md).
    CacheServer(CacheServerArgs),
    /// Remove from mirrors the packs no manifest names any more, once older than a grace
    /// period (--dry-run counts without removing).
    Gc(GcArgs),
    /// Write the man pages (netwatch.1, netwatch-COMMAND.1) into a directory: for packagers.
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration like \"5s\" or \"500ms\""))
}
