//! Real servers the transfer tests and benchmarks use as mirrors, started and stopped by them.

pub mod azurite;
pub mod fake_gcs;
pub mod hostile;
pub mod nginx;
pub mod seaweed;
pub mod sshd;

use std::net::{SocketAddr, TcpListener};

/// A loopback address with a port free a moment ago, for a server that cannot report the port
/// the kernel gave it. (In a namespace of the test's own, any fixed port is free.)
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// `f`, run in `ns` when there is one.
pub(crate) fn in_namespace<T: Send>(
    ns: Option<&crate::netns::NetNs>,
    f: impl FnOnce() -> T + Send,
) -> T {
    match ns {
        Some(ns) => ns.run(f),
        None => f(),
    }
}

/// `program`, run through `ip netns exec` when `ns` is given.
pub(crate) fn command_in(
    ns: Option<&crate::netns::NetNs>,
    program: impl AsRef<std::ffi::OsStr>,
) -> std::process::Command {
    match ns {
        Some(ns) => {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", ns.name()]).arg(program);
            command
        }
        None => std::process::Command::new(program),
    }
}

/// `$var`, else `installed` (relative to the workspace), where `cargo xtask test` puts it.
pub(crate) fn tool_path(var: &str, installed: &str) -> std::path::PathBuf {
    std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(installed)
        })
}
