//! `netwatch gc`: removes from mirrors the packs no manifest names any more.

use std::{process::ExitCode, time::Duration};

use super::{emit, load, names, open, run, to_json, TransferArgs, TransferCommandError};
use crate::{
    cli::parse_duration,
    settings::Settings,
    transfer::{self, Access, GcOptions},
};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// A mirror to clean, by name; repeat for several. [default: every configured mirror]
    #[arg(long = "mirror", value_name = "NAME")]
    pub mirrors: Vec<String>,
    /// Packs no manifest names that are younger than this stay: a put uploads its packs
    /// before its manifest, so a young one may be a running put's. [default: 6h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Read the manifests and count what would go, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: TransferArgs,
}

pub fn run_gc(args: &GcArgs, settings: &Settings) -> ExitCode {
    run(gc(args, settings))
}

async fn gc(args: &GcArgs, settings: &Settings) -> Result<ExitCode, TransferCommandError> {
    let (config, path) = load(settings)?;
    let ordered = config.mirrors_by_priority();
    let mut chosen = Vec::new();
    for name in &args.mirrors {
        let mirror = ordered.iter().find(|m| &m.name == name).ok_or_else(|| {
            TransferCommandError::UnknownMirror {
                name: name.clone(),
                path: path.to_path_buf(),
                known: names(&ordered),
            }
        })?;
        chosen.push(*mirror);
    }
    if chosen.is_empty() {
        chosen = ordered.clone();
    }
    let options = GcOptions {
        grace: args.grace.unwrap_or(transfer::DEFAULT_GRACE),
        dry_run: args.dry_run,
    };
    let (mut summaries, mut failed) = (Vec::new(), false);
    for mirror in chosen {
        let store = open(mirror, Access::Write)?;
        match transfer::gc(&store, &options).await {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    let text = if args.common.json {
        to_json(&summaries)
    } else {
        summaries
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    emit(&text)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
