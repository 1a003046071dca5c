//! `netwatch wait-online`: exits as soon as the host (or an endpoint) is Up, with an exit
//! status that says how the wait ended.

use std::{path::Path, process::ExitCode, time::Duration};

use super::{
    remote::{self, emit, stdout_is_terminal, CommandError},
    status::reasons,
    PathArgs,
};
use crate::{
    client::{Client, WaitReply, WaitStatus},
    server::protocol::MAX_WAIT,
    settings::Settings,
    state::Subject,
};

/// The subject is Up.
pub const EXIT_UP: u8 = 0;
/// The agent could not be reached, or refused the request.
pub const EXIT_ERROR: u8 = 1;
/// Not Up when the timeout passed, and not Down.
pub const EXIT_TIMEOUT: u8 = 3;
/// Down when the timeout passed.
pub const EXIT_DOWN: u8 = 4;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  the host (or endpoint) is Up
  1  error: the agent cannot be reached, or it refused the request
  2  usage error (bad arguments)
  3  timeout: not Up in time, and not Down (Degraded, Unknown, or an unknown endpoint)
  4  Down when the timeout passed";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct WaitOnlineArgs {
    #[command(flatten)]
    pub paths: PathArgs,

    /// How long to wait, agent start-up included: `30` (seconds, as
    /// systemd-networkd-wait-online takes it), `30s`, `500ms`, `2m`; at most a day. If the
    /// agent's socket is not there yet, it is waited for within this time.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Wait for the configured endpoint NAME instead of the host.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub endpoint: Option<String>,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => super::parse_duration(text)?,
    };
    if timeout > MAX_WAIT {
        return Err(format!("{text} is longer than the longest wait, a day"));
    }
    Ok(timeout)
}

impl WaitOnlineArgs {
    pub fn subject(&self) -> Subject {
        self.endpoint
            .clone()
            .map_or(Subject::Host, Subject::Endpoint)
    }
}

pub fn run_wait_online(args: &WaitOnlineArgs, settings: &Settings) -> ExitCode {
    remote::run(wait_online(args, &settings.socket))
}

async fn wait_online(args: &WaitOnlineArgs, socket: &Path) -> Result<ExitCode, CommandError> {
    let subject = args.subject();
    let started = tokio::time::Instant::now();
    let mut client = Client::connect_waiting(socket, args.timeout).await?;
    let remaining = args.timeout.saturating_sub(started.elapsed());
    let reply = client.wait(&subject, remaining).await?;
    let (code, message) = outcome(&subject, args.timeout, &reply);
    if code == EXIT_UP {
        if stdout_is_terminal() {
            emit(&message)?;
        }
    } else {
        eprintln!("{message}");
    }
    Ok(ExitCode::from(code))
}

/// The exit status and what to tell people.
fn outcome(subject: &Subject, timeout: Duration, reply: &WaitReply) -> (u8, String) {
    let after = humantime::format_duration(timeout);
    let because = |code, health: &str| {
        let why = reply
            .verdict
            .as_ref()
            .map(|v| format!(" ({})", reasons(v)))
            .unwrap_or_default();
        (code, format!("{subject} is {health}{why}"))
    };
    match (reply.outcome, &reply.verdict) {
        (WaitStatus::Up, _) => because(EXIT_UP, "up"),
        (WaitStatus::Down, _) => {
            let (code, text) = because(EXIT_DOWN, "down");
            (code, format!("{text} after waiting {after}"))
        }
        (WaitStatus::Timeout, None) => (
            EXIT_TIMEOUT,
            format!("{subject} is not known to the agent after waiting {after}: is it configured?"),
        ),
        (WaitStatus::Timeout, Some(verdict)) => {
            let (code, text) = because(EXIT_TIMEOUT, verdict.health.as_str());
            (code, format!("{text}, not up, after waiting {after}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        client::Clock,
        state::{Health, Verdict},
    };

    fn parse(args: &[&str]) -> Result<WaitOnlineArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["netwatch", "wait-online"], args].concat())?;
        match cli.command {
            Command::WaitOnline(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_host_and_thirty_seconds() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.timeout, Duration::from_secs(30));
        assert_eq!(args.subject(), Subject::Host);
        let args = parse(&["--timeout", "500ms", "--endpoint", "api"]).unwrap();
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(args.subject(), Subject::Endpoint("api".into()));
        let args = parse(&["--timeout", "30"]).unwrap();
        assert_eq!(
            args.timeout,
            Duration::from_secs(30),
            "plain seconds, as systemd's"
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["--timeout", "thirty"][..],
            &["--timeout", "2days"],
            &["--timeout", "90000"],
            &["--endpoint", ""],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn the_help_lists_the_exit_statuses() {
        let error = parse(&["--help"]).unwrap_err();
        let help = error.to_string();
        assert!(
            help.contains("Exit status:") && help.contains("4  Down"),
            "{help}"
        );
    }

    #[test]
    fn each_outcome_has_its_exit_status() {
        let reply = |outcome, health: Option<Health>| WaitReply {
            outcome,
            verdict: health.map(|health| Verdict {
                health,
                reasons: vec!["because".into()],
                since_ns: 0,
            }),
            clock: Clock {
                at_unix_ms: 0,
                now_ns: 0,
            },
        };
        let host = Subject::Host;
        let t = Duration::from_secs(30);
        assert_eq!(
            outcome(&host, t, &reply(WaitStatus::Up, Some(Health::Up))),
            (0, "host is up (because)".to_string())
        );
        let (code, text) = outcome(&host, t, &reply(WaitStatus::Down, Some(Health::Down)));
        assert_eq!(
            (code, text.as_str()),
            (4, "host is down (because) after waiting 30s")
        );
        let (code, text) = outcome(
            &host,
            t,
            &reply(WaitStatus::Timeout, Some(Health::Degraded)),
        );
        assert_eq!(code, 3);
        assert!(
            text.starts_with("host is degraded (because), not up"),
            "{text}"
        );
        let api = Subject::Endpoint("api".into());
        let (code, text) = outcome(&api, t, &reply(WaitStatus::Timeout, None));
        assert_eq!(code, 3);
        assert!(text.contains("endpoint:api is not known"), "{text}");
    }
}
