//! The `netwatch` binary: parses the command line and runs what it names.

use std::{process::ExitCode, time::Instant};

use anyhow::Context;
use clap::Parser;
use netwatch::{
    cli::{
        init_logging, run_cache, run_cache_server, run_check, run_gc, run_get, run_manpages,
        run_mirrors, run_put, run_status, run_sync, run_wait_online, run_watch, AgentArgs, Cli,
        Command,
    },
    settings::{self, Environment, Settings},
};
use netwatch_client::{
    clock::monotonic_ns,
    state::{NetworkState, StateWatch},
};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    // Needs no settings: a packager runs it on a build machine with no configuration.
    if let Command::Manpages(args) = &cli.command {
        return run_manpages(args);
    }
    init_logging(cli.log_format);
    let settings = match settings::resolve(&cli.command.path_flags(), &Environment::of_process()) {
        Ok(settings) => settings,
        Err(error) => {
            match cli.command {
                Command::Agent(_) => tracing::error!("{error}"),
                _ => eprintln!("error: {error}"),
            }
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Agent(args) => run_agent(&args, &settings, started),
        // Client commands report their own errors and choose their exit status.
        Command::Status(args) => return run_status(&args, &settings),
        Command::Watch(args) => return run_watch(&args, &settings),
        Command::WaitOnline(args) => return run_wait_online(&args, &settings),
        Command::Check(args) => return run_check(&args, &settings.socket),
        Command::Put(args) => return run_put(&args, &settings),
        Command::Get(args) => return run_get(&args, &settings),
        Command::Mirrors(args) => return run_mirrors(&args, &settings),
        Command::Sync(args) => return run_sync(&args, &settings),
        Command::Cache(args) => return run_cache(&args, &settings),
        Command::Gc(args) => return run_gc(&args, &settings),
        Command::CacheServer(args) => return run_cache_server(&args, &settings),
        Command::Manpages(_) => unreachable!("answered before the settings are resolved"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: &AgentArgs, settings: &Settings, started: Instant) -> anyhow::Result<()> {
    // Before the runtime exists: setns moves only this thread, and the runtime's threads
    // inherit it.
    if let Some(name) = &args.netns {
        netwatch_agent::netns::enter(name)?;
    }
    let config = args.resolve(settings, netwatch::KERNEL_PROGRAMS)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (name look-ups) parse what the network sends: no capabilities.
        .on_thread_start(|| {
            let _ = netwatch_agent::daemon::drop_thread_capabilities();
        })
        .build()
        .context("starting the async runtime")?;
    let (publish, _state) = StateWatch::channel(NetworkState::initial(monotonic_ns()));
    runtime.block_on(netwatch_agent::run(config, started, publish))?;
    Ok(())
}
