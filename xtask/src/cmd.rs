//! Running commands: echo them to stderr, turn a failed exit into an error that keeps the exit
//! code, and reach root (directly, or through `sudo -E`).

use std::{
    env,
    ffi::{OsStr, OsString},
    fmt,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// A command that ran and failed. `main` exits with [`Failed::exit_code`], so a failing test
/// run ends `cargo xtask test` with the test binary's own code.
#[derive(Debug)]
pub struct Failed {
    command: String,
    status: ExitStatus,
}

impl Failed {
    /// The code to exit with: the command's own, or 128 + signal as a shell reports it.
    pub fn exit_code(&self) -> u8 {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => u8::try_from(code).unwrap_or(1),
            (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
            (None, None) => 1,
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "`{}` exited with code {code}", self.command),
            (None, Some(signal)) => write!(f, "`{}` was killed by signal {signal}", self.command),
            (None, None) => write!(f, "`{}` failed ({})", self.command, self.status),
        }
    }
}

impl std::error::Error for Failed {}

/// Prints `> command` to stderr, runs it with inherited stdio and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    eprintln!("> {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failed {
            command: shown,
            status,
        }
        .into())
    }
}

/// Like [`run`] but captures stdout (stderr still streams), for commands whose output is parsed.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    eprintln!("> {shown}");
    let output = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        return Err(Failed {
            command: shown,
            status: output.status,
        }
        .into());
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed invalid UTF-8"))
}

/// A silent probe: the command's trimmed stdout if it ran and exited 0, else `None`.
pub fn probe(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    probe_with_env(program, args, &[])
}

/// [`probe`] with more environment variables.
pub fn probe_with_env(
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &[(&str, &OsStr)],
) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Prints `> command` and replaces this process with it, so its exit code and signals are its
/// own. Returns only if the exec failed.
pub fn exec(mut cmd: Command) -> anyhow::Error {
    let shown = display(&cmd);
    eprintln!("> {shown}");
    anyhow!(cmd.exec()).context(format!("could not start `{shown}`"))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as root: directly when we are root, else through `sudo -E`
/// (which keeps the environment, e.g. `NETWATCH_BIN` and `RUST_LOG`).
pub fn as_root(program: &Path) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    if find_on_path("sudo").is_none() {
        bail!(
            "`{}` needs root: run this as root, or install sudo",
            program.display()
        );
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-E").arg(program);
    Ok(cmd)
}

/// The first `name` in a directory of `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The cargo that runs xtask (rustup's stable), in the workspace root. Cargo sets `CARGO` for
/// `cargo run`; plain `cargo` is the fallback when xtask is started some other way.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The workspace root: the parent of xtask's own manifest directory.
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (made absolute in `main`), else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The command as a shell line: explicitly set variables, then the program and its arguments.
/// Cargo is shown as `cargo` whatever its path.
pub fn display(cmd: &Command) -> String {
    let env = cmd.get_envs().filter_map(|(key, value)| {
        let value = value?;
        Some(format!("{}={}", key.to_string_lossy(), quote(value)))
    });
    let program = Path::new(cmd.get_program());
    let program = if program.file_name() == Some(OsStr::new("cargo")) {
        "cargo".to_owned()
    } else {
        quote(program.as_os_str())
    };
    let args = cmd.get_args().map(quote);
    env.chain(std::iter::once(program))
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Single-quotes a word when a shell would otherwise split or expand it.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Makes a possibly relative path absolute against the current directory.
pub fn absolute(path: OsString) -> Result<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(env::current_dir()
        .context("reading the current directory")?
        .join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_cargo_and_quotes_only_what_needs_it() {
        let mut cmd = Command::new("/home/u/.rustup/toolchains/stable/bin/cargo");
        cmd.env("NETWATCH_BIN", "/t/debug/netwatch").args([
            "test",
            "-p",
            "netwatch-tests",
            "--",
            "name with space",
            "it's",
        ]);
        assert_eq!(
            display(&cmd),
            "NETWATCH_BIN=/t/debug/netwatch cargo test -p netwatch-tests -- \
             'name with space' 'it'\\''s'"
        );
    }

    #[test]
    fn failed_keeps_the_exit_code_and_maps_signals_like_a_shell() {
        let failed = |raw| Failed {
            command: "x".into(),
            status: ExitStatus::from_raw(raw),
        };
        assert_eq!(failed(101 << 8).exit_code(), 101);
        assert_eq!(failed(libc::SIGINT).exit_code(), 130);
    }
}
