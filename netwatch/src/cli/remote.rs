//! What the commands that talk to a running agent share: their runtime, their errors, and
//! writing to stdout.

use std::{
    future::Future,
    io::{self, IsTerminal, Write},
    process::ExitCode,
};

use netwatch_client::ClientError;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Talking to the agent failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Standard output is gone or full.
    #[error("writing to standard output failed: {0}")]
    Output(#[source] io::Error),
}

/// Which runtime a command needs: the socket clients one thread; transfers several (chunks
/// are hashed and compressed on blocking threads meanwhile).
pub(super) enum Runtime {
    CurrentThread,
    MultiThread,
}

/// A command's error, as `run_on` reports it.
pub(super) trait CommandFailure: std::fmt::Display {
    /// The reader of stdout went away (`netwatch watch | head`): not a failure.
    fn is_broken_pipe(&self) -> bool;
}

impl CommandFailure for CommandError {
    fn is_broken_pipe(&self) -> bool {
        matches!(self, CommandError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Runs a client command on a single-threaded runtime; see [`run_on`].
pub(super) fn run(command: impl Future<Output = Result<ExitCode, CommandError>>) -> ExitCode {
    run_on(Runtime::CurrentThread, command)
}

/// Runs a command on `runtime` and turns its result into the exit status; errors are
/// printed to stderr for people.
pub(super) fn run_on<E: CommandFailure>(
    runtime: Runtime,
    command: impl Future<Output = Result<ExitCode, E>>,
) -> ExitCode {
    let mut builder = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to stdout, at once (for `watch` behind a pipe).
pub(super) fn emit(text: &str) -> Result<(), CommandError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)
}

/// True when stdout is a terminal: colours and pretty JSON for people, plain text otherwise.
pub(super) fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}
