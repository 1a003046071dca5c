//! The `netwatch` binary: parses the command line and runs what it names.

use std::{process::ExitCode, time::Instant};

use anyhow::Context;
use clap::Parser;
use netwatch::cli::{
    init_logging, run_get, run_mirrors, run_put, run_status, run_sync, run_wait_online, run_watch,
    AgentArgs, Cli, Command,
};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Agent(args) => run_agent(&args, started),
        // Client commands report their own errors and choose their exit status.
        Command::Status(args) => return run_status(&args),
        Command::Watch(args) => return run_watch(&args),
        Command::WaitOnline(args) => return run_wait_online(&args),
        Command::Put(args) => return run_put(&args),
        Command::Get(args) => return run_get(&args),
        Command::Mirrors(args) => return run_mirrors(&args),
        Command::Sync(args) => return run_sync(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: &AgentArgs, started: Instant) -> anyhow::Result<()> {
    // Before the runtime exists: setns moves only this thread, and the runtime's threads
    // inherit it.
    if let Some(name) = &args.netns {
        netwatch::netns::enter(name)?;
    }
    let config = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (name look-ups) parse what the network sends: no capabilities.
        .on_thread_start(|| {
            let _ = netwatch::agent::drop_thread_capabilities();
        })
        .build()
        .context("starting the async runtime")?;
    let (publish, _state) = netwatch::state::StateWatch::channel(
        netwatch::state::NetworkState::initial(netwatch::ebpf::monotonic_ns()),
    );
    runtime.block_on(netwatch::agent::run(config, started, publish))?;
    Ok(())
}
