//! Logs go to stderr through tracing; `RUST_LOG` overrides the default level (info).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::{env_vars, LogFormat};

/// Info by default. netlink-proto warns of every socket overrun itself; the agent reports
/// each one (and what it did about it), so the library's own line would only repeat it.
const DEFAULT_FILTER: &str = "info,netlink_proto=error";

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(env_vars::RUST_LOG)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
