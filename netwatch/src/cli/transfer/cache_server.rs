//! `netwatch cache-server`: the build cache (docs/build-cache.md) for ccache and Bazel, in
//! front of the configuration's mirrors, on loopback; `--status` shows a running one's
//! figures.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use netwatch_buildcache::{self as buildcache, BuildCache, Lookup, Verdicts};
use tokio_util::sync::CancellationToken;

use super::{emit, load, open, run, scoreboard, to_json, TransferArgs, TransferCommandError};
use crate::{
    cli::paths::CacheArg,
    retry::{AgentSource, StateSource},
    settings::Settings,
    size::parse_size,
    transfer::Access,
};

#[derive(Debug, clap::Args)]
pub struct CacheServerArgs {
    /// The address to serve on; loopback only. Point ccache at `http://ADDR/ccache`
    /// (remote_storage), sccache at `http://ADDR/sccache` (SCCACHE_WEBDAV_ENDPOINT) and Bazel
    /// at `--remote_cache=http://ADDR/bazel`.
    #[arg(long, value_name = "ADDR", default_value = buildcache::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Answer a lookup the mirrors have not answered by then as a miss (the build tool
    /// compiles instead of waiting): `150ms`, `1s`. [default: 150ms]
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub miss_deadline: Option<Duration>,
    /// Ask the next mirror too when the best has not answered within this long at most: a
    /// mirror gets 4 times its usual answer time (5 ms at least) once it has answered a
    /// few: `40ms`. [default: 40ms]
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub hedge_after: Option<Duration>,
    /// Refuse entries larger than this (they pass through memory): `256MiB`. [default:
    /// 256MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_entry_size: Option<u64>,
    /// Keep this host's store under this size, evicting the least recently used (never an
    /// entry still waiting for a mirror): `20GiB`. [default: the configuration's [cache]
    /// max_size, 10GiB unless set]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Print the figures of the server running at --listen (hits, misses, each mirror's
    /// share and write-back queue) and exit.
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub cache: CacheArg,
    #[command(flatten)]
    pub common: TransferArgs,
}

pub fn run_cache_server(args: &CacheServerArgs, settings: &Settings) -> ExitCode {
    run(async {
        if args.status {
            status(args).await
        } else {
            serve(args, settings).await
        }
    })
}

async fn status(args: &CacheServerArgs) -> Result<ExitCode, TransferCommandError> {
    let figures = buildcache::fetch_status(args.listen).await?;
    let text = if args.common.json {
        to_json(&figures)
    } else {
        figures.to_string().trim_end().to_string()
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    args: &CacheServerArgs,
    settings: &Settings,
) -> Result<ExitCode, TransferCommandError> {
    let (config, _) = load(settings)?;
    let root = settings
        .cache
        .clone()
        .ok_or(TransferCommandError::NoCache)?;
    let mut mirrors = Vec::new();
    for mirror in config.mirrors_by_priority() {
        match open(mirror, Access::Write) {
            Ok(store) => mirrors.push(store),
            Err(error) => tracing::warn!("leaving out a mirror: {error}"),
        }
    }
    let source = Arc::new(AgentSource::new(settings.socket.clone())) as Arc<dyn StateSource>;
    let lookup = Lookup {
        mirrors,
        verdicts: Verdicts::follow(Some(source)),
        board: scoreboard(settings),
        hedge: args.hedge_after.unwrap_or(buildcache::DEFAULT_HEDGE),
        deadline: args
            .miss_deadline
            .unwrap_or(buildcache::DEFAULT_MISS_DEADLINE),
        max_entry: args.max_entry_size.unwrap_or(buildcache::DEFAULT_MAX_ENTRY),
    };
    let cancel = CancellationToken::new();
    let store = root.join("buildcache");
    let max_local = args.max_size.or(config.cache.max_size);
    let cache = BuildCache::start(&store, lookup, max_local, &cancel).map_err(|source| {
        TransferCommandError::BuildCacheStore {
            path: store.clone(),
            source,
        }
    })?;
    let listener = buildcache::bind(args.listen).await?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, store = %store.display(), "build cache serving");
    eprintln!(
        "netwatch cache-server: serving http://{addr}/ (store {})",
        store.display()
    );
    let stop = cancel.clone();
    tokio::spawn(async move {
        stop_signal().await;
        stop.cancel();
    });
    buildcache::serve(listener, Arc::new(cache), cancel)
        .await
        .map_err(|source| TransferCommandError::Serve { addr, source })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
