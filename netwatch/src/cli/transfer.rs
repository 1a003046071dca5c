//! `netwatch put`, `netwatch get` and `netwatch mirrors`: artifacts through the mirrors of the
//! configuration file's `[[mirror]]` tables (docs/transfer.md).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use serde::Serialize;

use super::{
    env_vars,
    format::{table, Cell, Style},
    remote::{self, emit, stdout_is_terminal, CommandError},
};
use crate::{
    config::{Config, ConfigError, MirrorConfig},
    retry::{AgentSource, StateSource},
    transfer::{
        self, Access, ArtifactKey, ChunkCache, Compression, MirrorStore, StoreError, Summary,
        TransferError, TransferOptions, DEFAULT_CONCURRENCY,
    },
};

/// Where the mirrors are configured unless `--config` or NETWATCH_CONFIG says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netwatch.toml";

/// What every transfer command takes.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The configuration file with the [[mirror]] tables (docs/config.md).
    /// [default: /etc/netwatch.toml]
    #[arg(long, value_name = "PATH", env = env_vars::NETWATCH_CONFIG)]
    pub config: Option<PathBuf>,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What put and get take besides.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The agent's socket: retries wait while it says the network is Down. Without an agent,
    /// retries use plain backoff. [default: NETWATCH_SOCKET, else the config file's, else
    /// /run/netwatch/netwatch.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Chunks in flight at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The file to upload.
    pub file: PathBuf,
    /// The artifact's key, like `builds/app/1.4.2.tar`.
    #[arg(value_parser = parse_key)]
    pub key: ArtifactKey,
    /// The mirror to write to. [default: the primary, the lowest priority]
    #[arg(long, value_name = "NAME")]
    pub mirror: Option<String>,
    /// How to store new chunks, instead of the mirror's `compression`.
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    #[command(flatten)]
    pub moving: MoveArgs,
    #[command(flatten)]
    pub common: TransferArgs,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The artifact's key.
    #[arg(value_parser = parse_key)]
    pub key: ArtifactKey,
    /// Where to write it; it appears only whole and checked.
    pub out: PathBuf,
    /// The local chunk cache. [default: $XDG_CACHE_HOME/netwatch, else ~/.cache/netwatch]
    #[arg(long, value_name = "DIR", env = env_vars::NETWATCH_CACHE_DIR)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub moving: MoveArgs,
    #[command(flatten)]
    pub common: TransferArgs,
}

#[derive(Debug, clap::Args)]
pub struct MirrorsArgs {
    #[command(flatten)]
    pub common: TransferArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Auto,
    Zstd,
    Gzip,
    None,
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err("expected a whole number from 1 to 256".to_string()),
    }
}

fn parse_key(text: &str) -> Result<ArtifactKey, String> {
    text.parse().map_err(|e: transfer::KeyError| e.to_string())
}

/// Why a transfer command failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferCommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration has no `[[mirror]]`.
    #[error("{} has no [[mirror]] table: add one (docs/config.md), or point --config at the file that has them", path.display())]
    NoMirrors { path: PathBuf },
    /// `--mirror NAME` names no mirror.
    #[error("no mirror is named `{name}` in {}: the mirrors are {known}", path.display())]
    UnknownMirror {
        name: String,
        path: PathBuf,
        known: String,
    },
    /// Neither `--cache`, NETWATCH_CACHE_DIR, XDG_CACHE_HOME nor HOME.
    #[error("no cache directory: pass --cache DIR or set NETWATCH_CACHE_DIR")]
    NoCache,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Output(#[from] CommandError),
}

pub fn run_put(args: &PutArgs) -> ExitCode {
    run(put(args))
}

pub fn run_get(args: &GetArgs) -> ExitCode {
    run(get(args))
}

pub fn run_mirrors(args: &MirrorsArgs) -> ExitCode {
    run(mirrors(args))
}

/// Runs a transfer command on a multi-threaded runtime (chunks are hashed and compressed on
/// blocking threads meanwhile); Ctrl-C cancels it, leaving fetched chunks in the cache.
fn run(
    command: impl std::future::Future<Output = Result<ExitCode, TransferCommandError>>,
) -> ExitCode {
    remote::run_on(remote::Runtime::MultiThread, command)
}

impl remote::CommandFailure for TransferCommandError {
    fn is_broken_pipe(&self) -> bool {
        matches!(self, TransferCommandError::Output(e) if remote::CommandFailure::is_broken_pipe(e))
    }
}

fn load(args: &TransferArgs) -> Result<(Config, PathBuf), TransferCommandError> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = Config::load(&path)?;
    if config.mirrors.is_empty() {
        return Err(TransferCommandError::NoMirrors { path });
    }
    Ok((config, path))
}

fn options(config: &Config, moving: &MoveArgs) -> TransferOptions {
    let socket = moving
        .socket
        .clone()
        .or_else(|| {
            std::env::var_os(env_vars::NETWATCH_SOCKET)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| config.socket.path.clone());
    let options = TransferOptions {
        concurrency: moving.concurrency,
        state: Some(Arc::new(AgentSource::new(socket)) as Arc<dyn StateSource>),
        ..TransferOptions::default()
    };
    let cancel = options.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    options
}

fn show(summary: &Summary, json: bool) -> Result<(), TransferCommandError> {
    let text = if json {
        to_json(summary)
    } else {
        summary.to_string()
    };
    emit(&text)?;
    Ok(())
}

fn to_json(value: &impl Serialize) -> String {
    let text = if stdout_is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.expect("summaries always serialise")
}

async fn put(args: &PutArgs) -> Result<ExitCode, TransferCommandError> {
    let (config, path) = load(&args.common)?;
    let ordered = config.mirrors_by_priority();
    let chosen: &MirrorConfig = match &args.mirror {
        None => ordered[0],
        Some(name) => ordered
            .iter()
            .find(|m| &m.name == name)
            .copied()
            .ok_or_else(|| TransferCommandError::UnknownMirror {
                name: name.clone(),
                path: path.clone(),
                known: names(&ordered),
            })?,
    };
    let mirror = MirrorStore::open(&chosen.name, &chosen.url, Access::Write)?;
    let mut options = options(&config, &args.moving);
    options.compression = match args.compression {
        None => chosen.compression,
        Some(CompressionArg::Auto) => Compression::Auto,
        Some(CompressionArg::Zstd) => Compression::Zstd(transfer::DEFAULT_ZSTD_LEVEL),
        Some(CompressionArg::Gzip) => Compression::Gzip(transfer::DEFAULT_GZIP_LEVEL),
        Some(CompressionArg::None) => Compression::None,
    };
    let summary = transfer::put(&args.file, &args.key, &mirror, &options).await?;
    show(&summary, args.common.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn get(args: &GetArgs) -> Result<ExitCode, TransferCommandError> {
    let (config, _) = load(&args.common)?;
    let cache = args
        .cache
        .clone()
        .or_else(ChunkCache::default_root)
        .map(ChunkCache::new)
        .ok_or(TransferCommandError::NoCache)?;
    // A mirror that cannot even be opened (no credentials) is left out, with a warning: the
    // others, or the cache, may still serve.
    let mut mirrors = Vec::new();
    for mirror in config.mirrors_by_priority() {
        match MirrorStore::open(&mirror.name, &mirror.url, Access::Read) {
            Ok(store) => mirrors.push(store),
            Err(error) => tracing::warn!("leaving out a mirror: {error}"),
        }
    }
    let options = options(&config, &args.moving);
    let summary = transfer::get(&args.key, &args.out, &mirrors, &cache, &options).await?;
    show(&summary, args.common.json)?;
    Ok(ExitCode::SUCCESS)
}

/// One row of `netwatch mirrors`.
#[derive(Serialize)]
struct MirrorRow {
    name: String,
    region: Option<String>,
    priority: u32,
    url: String,
    answered: bool,
    latency_ms: Option<f64>,
    error: Option<String>,
}

async fn mirrors(args: &MirrorsArgs) -> Result<ExitCode, TransferCommandError> {
    let (config, _) = load(&args.common)?;
    let ordered = config.mirrors_by_priority();
    let mut rows: Vec<MirrorRow> = ordered
        .iter()
        .map(|m| MirrorRow {
            name: m.name.clone(),
            region: m.region.clone(),
            priority: m.priority,
            url: m.url.to_string(),
            answered: false,
            latency_ms: None,
            error: None,
        })
        .collect();
    let mut opened = Vec::new();
    for (row, mirror) in rows.iter_mut().zip(&ordered) {
        match MirrorStore::open(&mirror.name, &mirror.url, Access::Read) {
            Ok(store) => opened.push(store),
            Err(error) => row.error = Some(error.to_string()),
        }
    }
    for probe in transfer::probe(&opened).await {
        if let Some(row) = rows.iter_mut().find(|r| r.name == probe.name) {
            row.answered = probe.latency_ms.is_some();
            row.latency_ms = probe.latency_ms;
            row.error = probe.error;
        }
    }
    if args.common.json {
        emit(&to_json(&rows))?;
    } else {
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| {
                vec![
                    Cell::text(&r.name),
                    Cell::text(r.region.as_deref().unwrap_or("-")),
                    Cell::text(r.priority.to_string()),
                    Cell::text(&r.url),
                    Cell::text(match r.latency_ms {
                        Some(ms) => format!("{ms:.1} ms"),
                        None => "no answer".to_string(),
                    }),
                    Cell::text(r.error.as_deref().unwrap_or("-")),
                ]
            })
            .collect();
        let style = Style {
            color: stdout_is_terminal(),
        };
        let text = table(
            &["MIRROR", "REGION", "PRIORITY", "URL", "LATENCY", "ERROR"],
            &cells,
            style,
        );
        emit(text.trim_end())?;
    }
    Ok(if rows.iter().all(|r| r.answered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn names(mirrors: &[&MirrorConfig]) -> String {
    mirrors
        .iter()
        .map(|m| format!("`{}`", m.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn put_and_get_take_a_checked_key() {
        let cli = Cli::try_parse_from([
            "netwatch",
            "put",
            "app.tar",
            "builds/app.tar",
            "--mirror",
            "eu",
            "--json",
        ])
        .unwrap();
        let Command::Put(args) = cli.command else {
            panic!("not put")
        };
        assert_eq!(args.key.as_str(), "builds/app.tar");
        assert_eq!(args.mirror.as_deref(), Some("eu"));
        assert!(args.common.json);
        let error = Cli::try_parse_from(["netwatch", "get", "../etc/passwd", "out"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("is not an artifact key"),
            "{error}"
        );
        let error =
            Cli::try_parse_from(["netwatch", "get", "k", "out", "--concurrency", "0"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
