//! Logs go to stderr through tracing; `RUST_LOG` overrides the default level (info).

use tracing_subscriber::EnvFilter;

use super::{env_vars, LogFormat};

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env(env_vars::RUST_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
