//! `netwatch put`, `netwatch get` and `netwatch mirrors`: artifacts through the mirrors of the
//! configuration file's `[[mirror]]` tables (docs/transfer.md). The mirror scoreboard lives in
//! the cache directory: `get` ranks mirrors by it, `put` takes the link's bandwidth from it,
//! and both feed it what they saw.

mod cache;
mod cache_server;
mod gc;
mod mirrors;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use serde::Serialize;

use super::{
    remote::{self, emit, stdout_is_terminal, CommandError},
    CacheArg, PathArgs,
};
use crate::{
    config::{Config, ConfigError, MirrorConfig},
    retry::{AgentSource, StateSource},
    settings::Settings,
    transfer::{
        self, ensure_bandwidth_object, measure_mirrors_with, Access, ArtifactKey, ChunkCache,
        Compression, Fetch, MeasureLimits, MirrorStore, Scoreboard, StoreError, Summary,
        TransferError, TransferOptions, DEFAULT_CONCURRENCY, STALE_AFTER,
    },
};

pub use cache::{run_cache, CacheArgs};
pub use cache_server::{run_cache_server, CacheServerArgs};
pub use gc::{run_gc, GcArgs};
pub use mirrors::{run_mirrors, MirrorsArgs};

/// What every transfer command takes. The agent's socket: retries wait while it says the
/// network is Down; without an agent, retries use plain backoff.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub paths: PathArgs,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What put, get and sync take besides.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// Chunks in flight at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,
}

/// What put and get, which copy one artifact, take besides their own.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub cache: CacheArg,
    #[command(flatten)]
    pub moving: MoveArgs,
    #[command(flatten)]
    pub common: TransferArgs,
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
    /// Fill each pack (the objects chunks are stored in) to this size before uploading it,
    /// from 1MiB to 1GiB: larger packs mean fewer requests, smaller ones less to redo after a
    /// failed upload and less memory (two are held at once). [default: 32MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_pack_size)]
    pub pack_size: Option<u64>,
    /// What names the chunks and the whole file. `auto` follows the key's current manifest
    /// (a key first put with SHA-256 keeps it, and still moves only what changed) and takes
    /// BLAKE3 for a new key; `blake3` moves a SHA-256 key to BLAKE3 (every chunk is stored
    /// again, once); `sha256` writes format 2, which netwatch before format 3 reads.
    /// [default: auto]
    #[arg(long, value_enum)]
    pub digest: Option<DigestArg>,
    #[command(flatten)]
    pub copy: CopyArgs,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The artifact's key.
    #[arg(value_parser = parse_key)]
    pub key: ArtifactKey,
    /// Where to write it: a file, which appears only whole and checked (an existing one must
    /// be a regular file; it keeps its owner and mode), or `-` for standard output (streamed:
    /// the exit status says whether it checked out).
    pub out: PathBuf,
    /// Refuse an artifact larger than this, before fetching anything: `500MiB`, `20GB`, or
    /// bytes. Whatever this says, an artifact larger than the output's free space is refused.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Take a request to the next mirror when its mirror sends nothing for this long (`10s`,
    /// `1m`): the mirror counts a failure (avoided for the rest of the get after two), no
    /// retry attempt is spent. Catches answers stranded by a cut path, which no verdict can
    /// see while the get has nothing to send. [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_stall)]
    pub stall_timeout: Option<Duration>,
    #[command(flatten)]
    pub copy: CopyArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestArg {
    Auto,
    Blake3,
    Sha256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Auto,
    Zstd,
    Gzip,
    None,
}

fn parse_stall(text: &str) -> Result<Duration, String> {
    match super::parse_duration(text)? {
        limit if limit >= Duration::from_secs(1) => Ok(limit),
        _ => Err("expected 1s or more, like `10s` or `1m`".to_string()),
    }
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err("expected a whole number from 1 to 256".to_string()),
    }
}

/// `123`, `500MiB`, `20GB`, `1.5TiB`: a size in bytes.
fn parse_pack_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if !(transfer::MIN_PACK_SIZE..=transfer::MAX_PACK_SIZE).contains(&size) {
        return Err(format!(
            "`{text}` is outside 1MiB..=1GiB: a pack must hold several chunks, and is held in memory"
        ));
    }
    Ok(size)
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::size::parse_size(text)
}

fn parse_key(text: &str) -> Result<ArtifactKey, String> {
    text.parse().map_err(|e: transfer::KeyError| e.to_string())
}

/// Why a transfer command failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferCommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No configuration file was named, and the system's is missing.
    #[error("no configuration file with [[mirror]] tables: pass --config PATH, set NETWATCH_CONFIG, or write {} (docs/config.md)", system.display())]
    NoConfig { system: PathBuf },
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
    /// The build cache's directory cannot be made or read.
    #[error("the build cache's store {}: {source}: check that the cache directory is writable, or pass --cache DIR", path.display())]
    BuildCacheStore {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] netwatch_buildcache::ListenError),
    #[error(transparent)]
    Status(#[from] netwatch_buildcache::StatusError),
    #[error("the build cache server on {addr} stopped: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub fn run_put(args: &PutArgs, settings: &Settings) -> ExitCode {
    run(put(args, settings))
}

pub fn run_get(args: &GetArgs, settings: &Settings) -> ExitCode {
    run(get(args, settings))
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

/// The configuration and its file, which must have mirrors.
pub(super) fn load(settings: &Settings) -> Result<(&Config, &Path), TransferCommandError> {
    let Some(path) = settings.config_file.as_deref() else {
        return Err(TransferCommandError::NoConfig {
            system: PathBuf::from(netwatch_client::paths::DEFAULT_CONFIG_PATH),
        });
    };
    if settings.config.mirrors.is_empty() {
        return Err(TransferCommandError::NoMirrors {
            path: path.to_path_buf(),
        });
    }
    Ok((&settings.config, path))
}

pub(super) fn options(settings: &Settings, moving: &MoveArgs) -> TransferOptions {
    let socket = settings.socket.clone();
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

/// Opens a configured mirror, linked to its endpoint.
pub(super) fn open(mirror: &MirrorConfig, access: Access) -> Result<MirrorStore, StoreError> {
    Ok(
        MirrorStore::open(&mirror.name, &mirror.url, access)?
            .with_endpoint(mirror.endpoint.clone()),
    )
}

/// The scoreboard in the cache directory; without one, one that lives only for this command.
pub(super) fn scoreboard(settings: &Settings) -> Scoreboard {
    match &settings.cache {
        Some(root) => Scoreboard::load(root),
        None => Scoreboard::in_memory(),
    }
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

pub(super) fn to_json(value: &impl Serialize) -> String {
    let text = if stdout_is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.expect("summaries always serialise")
}

async fn put(args: &PutArgs, settings: &Settings) -> Result<ExitCode, TransferCommandError> {
    let (config, path) = load(settings)?;
    let ordered = config.mirrors_by_priority();
    let chosen: &MirrorConfig = match &args.mirror {
        None => ordered[0],
        Some(name) => ordered
            .iter()
            .find(|m| &m.name == name)
            .copied()
            .ok_or_else(|| TransferCommandError::UnknownMirror {
                name: name.clone(),
                path: path.to_path_buf(),
                known: names(&ordered),
            })?,
    };
    let mirror = open(chosen, Access::Write)?;
    let mut options = options(settings, &args.copy.moving);
    options.compression = match args.compression {
        None => chosen.compression,
        Some(CompressionArg::Auto) => Compression::Auto,
        Some(CompressionArg::Zstd) => Compression::Zstd(transfer::DEFAULT_ZSTD_LEVEL),
        Some(CompressionArg::Gzip) => Compression::Gzip(transfer::DEFAULT_GZIP_LEVEL),
        Some(CompressionArg::None) => Compression::None,
    };
    if let Some(pack_size) = args.pack_size {
        options.pack_size = pack_size;
    }
    options.digest = match args.digest {
        None | Some(DigestArg::Auto) => None,
        Some(DigestArg::Blake3) => Some(transfer::Algorithm::Blake3),
        Some(DigestArg::Sha256) => Some(transfer::Algorithm::Sha256),
    };
    let mut board = scoreboard(settings);
    if options.compression == Compression::Auto {
        options.link_bytes_per_sec = options
            .unless_cancelled(link_bandwidth(&mirror, &mut board))
            .await?;
        board.save_or_warn();
    }
    let bar = super::progress::Bar::start("put", args.key.as_str(), args.copy.common.json);
    options.progress = bar.as_ref().map(super::progress::Bar::report);
    let summary = transfer::put(&args.file, &args.key, &mirror, &options).await?;
    drop(bar);
    board.observe(&summary, std::slice::from_ref(&mirror));
    board.save_or_warn();
    show(&summary, args.copy.common.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The link's bandwidth to `mirror` for choosing compression: the scoreboard's figure while
/// fresh, else measured now: a ranged read of the bandwidth object, or, when the mirror lacks
/// it, the time to write it.
async fn link_bandwidth(mirror: &MirrorStore, board: &mut Scoreboard) -> Option<f64> {
    let known = |board: &Scoreboard| board.entry(mirror).and_then(|e| e.bandwidth_bytes_per_sec);
    if board.is_fresh(mirror, STALE_AFTER) && known(board).is_some() {
        return known(board);
    }
    let measured = measure_mirrors_with(std::slice::from_ref(mirror), MeasureLimits::QUICK).await;
    let measured = &measured[0];
    board.record_measurement(measured);
    let answered_without_object = measured.error.is_none()
        && measured.bandwidth_bytes_per_sec.is_none()
        && measured.bandwidth_error.is_none();
    if answered_without_object {
        let limit = MeasureLimits::QUICK.answer * 5;
        match tokio::time::timeout(limit, ensure_bandwidth_object(mirror)).await {
            Ok(Ok(Some(took))) => board.record_object_write(mirror, took),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "writing the bandwidth object"),
            Err(_) => tracing::debug!("writing the bandwidth object took too long"),
        }
    }
    known(board)
}

async fn get(args: &GetArgs, settings: &Settings) -> Result<ExitCode, TransferCommandError> {
    let (config, _) = load(settings)?;
    let cache = settings
        .cache
        .clone()
        .map(ChunkCache::new)
        .ok_or(TransferCommandError::NoCache)?;
    // A mirror that cannot even be opened (no credentials) is left out, with a warning: the
    // others, or the cache, may still serve.
    let mut mirrors = Vec::new();
    for mirror in config.mirrors_by_priority() {
        match open(mirror, Access::Read) {
            Ok(store) => mirrors.push(store),
            Err(error) => tracing::warn!("leaving out a mirror: {error}"),
        }
    }
    let mut options = options(settings, &args.copy.moving);
    options.max_output = args.max_size;
    options.stall = args.stall_timeout.unwrap_or(transfer::DEFAULT_STALL);
    options.cache_max = config.cache.max_size;
    let bar = super::progress::Bar::start("get", args.key.as_str(), args.copy.common.json);
    options.progress = bar.as_ref().map(super::progress::Bar::report);
    let fetch = Fetch::new(&args.key, &args.out, &mirrors, &cache);
    let summary = transfer::get_ranked(fetch, &options).await?;
    drop(bar);
    if args.out.as_os_str() == "-" {
        // Standard output holds the artifact: the summary goes to stderr.
        eprintln!(
            "{}",
            if args.copy.common.json {
                to_json(&summary)
            } else {
                summary.to_string()
            }
        );
    } else {
        show(&summary, args.copy.common.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn names(mirrors: &[&MirrorConfig]) -> String {
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
        assert!(args.copy.common.json);
        let error = Cli::try_parse_from(["netwatch", "get", "../etc/passwd", "out"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("is not an artifact key"),
            "{error}"
        );
        let error =
            Cli::try_parse_from(["netwatch", "get", "k", "out", "--concurrency", "0"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let error =
            Cli::try_parse_from(["netwatch", "get", "k", "out", "--stall-timeout", "500ms"])
                .unwrap_err();
        assert!(error.to_string().contains("expected 1s or more"), "{error}");
        let cli =
            Cli::try_parse_from(["netwatch", "get", "k", "out", "--stall-timeout", "1m"]).unwrap();
        let Command::Get(args) = cli.command else {
            panic!("not get")
        };
        assert_eq!(args.stall_timeout, Some(std::time::Duration::from_secs(60)));
    }

    #[test]
    fn sizes_take_units_and_refuse_what_is_not_one() {
        use super::parse_size;
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
