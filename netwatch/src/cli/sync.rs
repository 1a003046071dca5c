//! `netwatch sync`: the configured mirrors made to hold the newest version of every key
//! (docs/transfer.md).

use std::{path::PathBuf, process::ExitCode};

use super::{
    progress::Bar,
    remote::{self, emit, CommandFailure},
    transfer::{load, names, open, options, to_json, MoveArgs, TransferArgs, TransferCommandError},
};
use crate::{
    settings::Settings,
    transfer::{self, Access, KeyPrefix, MirrorStore, StoreError, SyncError, SyncScope},
};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Copy only from this mirror; repeat for several. [default: every mirror]
    #[arg(long = "from", value_name = "NAME")]
    pub from: Vec<String>,
    /// Copy only to this mirror; repeat for several. [default: every mirror]
    #[arg(long = "to", value_name = "NAME")]
    pub to: Vec<String>,
    /// Only the keys that begin with PREFIX, like `builds/`.
    #[arg(long = "key", value_name = "PREFIX", value_parser = parse_prefix)]
    pub prefix: Option<KeyPrefix>,
    /// Say what would be copied; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub moving: MoveArgs,
    #[command(flatten)]
    pub common: TransferArgs,
}

fn parse_prefix(text: &str) -> Result<KeyPrefix, String> {
    text.parse()
        .map_err(|e: transfer::PrefixError| e.to_string())
}

/// Why `netwatch sync` could not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncCommandError {
    #[error(transparent)]
    Command(#[from] TransferCommandError),
    /// One mirror has nothing to sync with.
    #[error("{} has one [[mirror]] (`{name}`): sync copies between mirrors, so add another (docs/config.md)", path.display())]
    OneMirror { path: PathBuf, name: String },
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl CommandFailure for SyncCommandError {
    fn is_broken_pipe(&self) -> bool {
        matches!(self, SyncCommandError::Command(e) if e.is_broken_pipe())
    }
}

pub fn run_sync(args: &SyncArgs, settings: &Settings) -> ExitCode {
    remote::run_on(remote::Runtime::MultiThread, sync(args, settings))
}

async fn sync(args: &SyncArgs, settings: &Settings) -> Result<ExitCode, SyncCommandError> {
    let (config, path) = load(settings)?;
    let path = path.to_path_buf();
    let ordered = config.mirrors_by_priority();
    for name in args.from.iter().chain(&args.to) {
        if !ordered.iter().any(|m| &m.name == name) {
            return Err(TransferCommandError::UnknownMirror {
                name: name.clone(),
                path,
                known: names(&ordered),
            }
            .into());
        }
    }
    if let [only] = ordered[..] {
        return Err(SyncCommandError::OneMirror {
            path,
            name: only.name.clone(),
        });
    }
    let named = |names: &[String], name: &str| names.is_empty() || names.iter().any(|n| n == name);

    // Each mirror in the sync, opened for what it does; one that cannot be opened (no
    // credentials, a dry run's missing directory) is a failure, and the others go on.
    let (mut mirrors, mut unopened): (Vec<MirrorStore>, Vec<(String, String)>) =
        (Vec::new(), Vec::new());
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for mirror in &ordered {
        let source = named(&args.from, &mirror.name);
        let destination = named(&args.to, &mirror.name);
        if !(source || destination) {
            continue;
        }
        // A dry run creates nothing, not even a file mirror's directory.
        let access = if destination && !args.dry_run {
            Access::Write
        } else {
            Access::Read
        };
        match open(mirror, access) {
            Ok(store) => {
                mirrors.push(store);
                if source {
                    from.push(mirror.name.clone());
                }
                if destination {
                    to.push(mirror.name.clone());
                }
            }
            Err(error @ StoreError::MissingDirectory { .. }) if destination && args.dry_run => {
                unopened.push((
                    mirror.name.clone(),
                    format!("{error} (a dry run does not create it; a sync without --dry-run does, and copies every key there)"),
                ))
            }
            Err(error) => unopened.push((mirror.name.clone(), error.to_string())),
        }
    }

    let mut summary = if from.is_empty() || to.is_empty() {
        // Nothing to copy from or to: the failures below say why.
        transfer::SyncSummary {
            dry_run: args.dry_run,
            ..Default::default()
        }
    } else {
        let scope = SyncScope {
            from,
            to,
            prefix: args.prefix.clone().unwrap_or_default(),
            dry_run: args.dry_run,
        };
        let what = match scope.prefix.as_str() {
            "" => "every key".to_string(),
            prefix => format!("{prefix}*"),
        };
        let mut options = options(settings, &args.moving);
        let bar = Bar::start("sync", &what, args.common.json);
        options.progress = bar.as_ref().map(Bar::report);
        let result = transfer::sync(&mirrors, &scope, &options).await;
        // Cleared before anything else is printed.
        drop(bar);
        result?
    };
    for (name, reason) in unopened {
        summary.fail(None, &name, reason);
    }
    let text = if args.common.json {
        to_json(&summary)
    } else {
        summary.to_string()
    };
    emit(&text).map_err(TransferCommandError::from)?;
    Ok(if summary.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn sync_takes_mirror_names_a_checked_prefix_and_a_dry_run() {
        let cli = Cli::try_parse_from([
            "netwatch",
            "sync",
            "--from",
            "eu",
            "--to",
            "us",
            "--to",
            "ap",
            "--key",
            "builds/",
            "--dry-run",
            "--json",
        ])
        .unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(args.from, ["eu"]);
        assert_eq!(args.to, ["us", "ap"]);
        assert_eq!(args.prefix.unwrap().as_str(), "builds/");
        assert!(args.dry_run && args.common.json);
        let error = Cli::try_parse_from(["netwatch", "sync", "--key", "../x"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("cannot begin an artifact key"),
            "{error}"
        );
    }
}
