//! The `netwatch` command line: argument types (clap lives only here) and logging set-up.

mod logging;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::{agent::AgentConfig, ebpf::XdpMode};

pub use logging::init as init_logging;

/// Every environment variable netwatch reads, in one place.
pub mod env_vars {
    /// Log filter, e.g. `debug` or `netwatch=debug` (tracing's EnvFilter syntax).
    pub const RUST_LOG: &str = "RUST_LOG";
    /// `text` or `json`; the `--log-format` flag wins.
    pub const NETWATCH_LOG_FORMAT: &str = "NETWATCH_LOG_FORMAT";
}

/// Tells programs on this host, within milliseconds, whether the network is Up, Degraded or Down.
#[derive(Debug, Parser)]
#[command(name = "netwatch", version, propagate_version = true)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = env_vars::NETWATCH_LOG_FORMAT)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host agent (as root): load the kernel programs, follow link, address and route
    /// changes, count traffic per interface. It sends no network traffic of its own.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Watch the network namespace NAME (as `ip netns` names it) instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// How often to log one line per interface (rates and retransmits), e.g. `5s`, `500ms`; `0` turns it off.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub report_interval: Duration,

    /// Where XDP runs: `generic` works on every interface and never resets a NIC; `native`
    /// runs in the driver (faster), but some drivers briefly drop the link to attach it.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Generic)]
    pub xdp_mode: XdpModeArg,

    /// Receive buffer of the netlink event socket, in bytes. When a burst overruns it the
    /// agent re-reads the full state, so this only trades memory for fewer re-reads.
    #[arg(long, value_name = "BYTES", default_value_t = crate::netlink::DEFAULT_EVENT_BUFFER)]
    pub event_buffer: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Generic,
    Native,
}

impl AgentArgs {
    pub fn config(&self) -> AgentConfig {
        AgentConfig {
            report_interval: (!self.report_interval.is_zero()).then_some(self.report_interval),
            xdp_mode: match self.xdp_mode {
                XdpModeArg::Generic => XdpMode::Generic,
                XdpModeArg::Native => XdpMode::Native,
            },
            event_buffer: self.event_buffer,
            ..AgentConfig::default()
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration like \"5s\" or \"500ms\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_interval_takes_units_and_zero_turns_it_off() {
        let cli = Cli::try_parse_from(["netwatch", "agent", "--report-interval", "500ms"]).unwrap();
        let Command::Agent(args) = cli.command;
        assert_eq!(
            args.config().report_interval,
            Some(Duration::from_millis(500))
        );
        let cli = Cli::try_parse_from(["netwatch", "agent", "--report-interval", "0"]).unwrap();
        let Command::Agent(args) = cli.command;
        assert_eq!(args.config().report_interval, None);
    }

    #[test]
    fn a_duration_without_unit_is_refused_with_the_expected_form() {
        let error =
            Cli::try_parse_from(["netwatch", "agent", "--report-interval", "5"]).unwrap_err();
        assert!(
            error.to_string().contains("expected a duration like"),
            "{error}"
        );
    }

    #[test]
    fn defaults_are_generic_xdp_and_a_five_second_report() {
        let cli = Cli::try_parse_from(["netwatch", "agent"]).unwrap();
        let Command::Agent(args) = cli.command;
        let config = args.config();
        assert_eq!(config.xdp_mode, XdpMode::Generic);
        assert_eq!(config.report_interval, Some(Duration::from_secs(5)));
        assert_eq!(args.netns, None);
    }
}
