//! `netwatch manpages DIR` (hidden): the man pages, generated from the same clap definitions
//! as `--help`, so the package's pages cannot drift from the binary they describe.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, CommandFactory as _};

use super::Cli;

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// The directory to write netwatch.1 and netwatch-COMMAND.1 into (created if missing).
    pub dir: PathBuf,
}

/// Writes the pages and prints each path; exit 1 with the reason if one cannot be written.
pub fn run_manpages(args: &ManpagesArgs) -> ExitCode {
    match write_pages(&args.dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: cannot write the man pages into {}: {error}",
                args.dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// One page for `netwatch` and one per visible subcommand, named as `git` names its own.
fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut netwatch = Cli::command();
    // Building propagates the global flags and --version into every subcommand first.
    netwatch.build();
    let mut written = vec![write_page(dir, netwatch.clone())?];
    // `help` is clap's own, and says what the pages already do.
    let documented = netwatch
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help");
    for command in documented {
        let name = format!("netwatch-{}", command.get_name());
        let page = command.clone().name(name);
        written.push(write_page(dir, page)?);
    }
    Ok(written)
}

fn write_page(dir: &Path, command: clap::Command) -> io::Result<PathBuf> {
    let path = dir.join(format!("{}.1", command.get_name()));
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    fs::write(&path, page)?;
    Ok(path)
}
