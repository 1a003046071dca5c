//! `netwatch cache`: what the local cache of `get` holds, against its cap, and evicting to
//! the cap on demand; and what the build cache server's store beside it holds (the server
//! keeps that one under its own cap).

use std::process::ExitCode;

use serde::Serialize;

use super::{emit, run, to_json, TransferArgs, TransferCommandError};
use crate::{
    cli::{format::bytes, paths::CacheArg},
    settings::Settings,
    size::parse_size,
    transfer::{CacheUsage, ChunkCache, Evicted},
};

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Evict the least recently used until the cache is under its cap (or --max-size).
    #[arg(long)]
    pub prune: bool,
    /// The cap to prune to, instead of the configuration's `[cache] max_size`: `2GiB`,
    /// `500MB`, or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    #[command(flatten)]
    pub cache: CacheArg,
    #[command(flatten)]
    pub common: TransferArgs,
}

/// What `netwatch cache` reports.
#[derive(Debug, Serialize)]
struct Report {
    path: String,
    #[serde(flatten)]
    usage: CacheUsage,
    /// The cap, in bytes; `None` for none.
    max_bytes: Option<u64>,
    /// What `--prune` removed.
    evicted: Option<Evicted>,
    /// The build cache server's store (`buildcache/`), if there is one.
    build_cache: Option<netwatch_buildcache::StoreUsage>,
}

pub fn run_cache(args: &CacheArgs, settings: &Settings) -> ExitCode {
    run(async { cache(args, settings) })
}

fn cache(args: &CacheArgs, settings: &Settings) -> Result<ExitCode, TransferCommandError> {
    let root = settings
        .cache
        .clone()
        .ok_or(TransferCommandError::NoCache)?;
    let cache = ChunkCache::new(&root);
    let max_bytes = args.max_size.or(settings.config.cache.max_size);
    let evicted = match (args.prune, max_bytes) {
        (true, Some(cap)) => Some(cache.evict_to(cap)),
        (true, None) => Some(Evicted::default()),
        (false, _) => None,
    };
    let report = Report {
        path: root.display().to_string(),
        usage: cache.usage(),
        max_bytes,
        evicted,
        build_cache: netwatch_buildcache::store_usage(&root.join("buildcache"))
            .ok()
            .flatten(),
    };
    let text = if args.common.json {
        to_json(&report)
    } else {
        human(&report)
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn human(report: &Report) -> String {
    let usage = &report.usage;
    let mut text = format!(
        "cache {}: {} in {} outputs (seeds), {} ranges of packs and {} chunk files; {} \
         manifests\n",
        report.path,
        bytes(usage.bytes),
        usage.seeds,
        usage.ranges,
        usage.chunks,
        usage.manifests
    );
    text += &match report.max_bytes {
        Some(cap) => format!("  cap {} ([cache] max_size or --max-size)\n", bytes(cap)),
        None => "  no cap\n".to_string(),
    };
    if let Some(evicted) = report.evicted {
        text += &format!(
            "  evicted {} files, {}\n",
            evicted.files,
            bytes(evicted.bytes)
        );
    }
    if let Some(build) = report.build_cache {
        text += &format!(
            "  build cache (netwatch cache-server): {} entries, {}; {} uploads waiting for \
             mirrors\n",
            build.entries,
            bytes(build.bytes),
            build.queued
        );
    }
    text.trim_end().to_string()
}
