//! `netwatch check`: one look at the verdict, answered in the exit-status protocol of
//! Kubernetes' node-problem-detector custom plugins (0 OK, 1 a problem, 2 unknown), with one
//! line on stdout that NPD shows as the condition's message.

use std::{path::Path, process::ExitCode, time::Duration};

use super::{status::reasons, PathArgs};
use crate::{
    client::Client,
    state::{Health, NetworkState, Subject},
};

/// Up.
pub const CHECK_OK: u8 = 0;
/// Down or Degraded.
pub const CHECK_PROBLEM: u8 = 1;
/// Unknown, an endpoint the agent does not know, or no agent to ask.
pub const CHECK_UNKNOWN: u8 = 2;
/// How long to wait for the agent's answer: NPD runs plugins with a timeout of its own.
const ASK_WITHIN: Duration = Duration::from_secs(5);

const EXIT_STATUS_HELP: &str = "\
Exit status (node-problem-detector's custom plugin protocol):
  0  the host (or endpoint) is Up
  1  it is Down or Degraded: a problem
  2  unknown: the verdict is Unknown, the endpoint is not configured, or no agent answered";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct CheckArgs {
    #[command(flatten)]
    pub paths: PathArgs,

    /// Check the configured endpoint NAME instead of the host.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub endpoint: Option<String>,
}

pub fn run_check(args: &CheckArgs, socket: &Path) -> ExitCode {
    let subject = args
        .endpoint
        .clone()
        .map_or(Subject::Host, Subject::Endpoint);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let asked = match runtime {
        Ok(runtime) => runtime.block_on(async {
            tokio::time::timeout(ASK_WITHIN, async {
                Client::connect(socket).await?.get().await
            })
            .await
        }),
        Err(e) => {
            println!("netwatch check could not start: {e}");
            return ExitCode::from(CHECK_UNKNOWN);
        }
    };
    let (code, message) = match asked {
        Ok(Ok(state)) => judge(&state, &subject),
        Ok(Err(e)) => (CHECK_UNKNOWN, format!("no verdict: {e}")),
        Err(_) => (
            CHECK_UNKNOWN,
            format!("no verdict: the agent did not answer within {ASK_WITHIN:?}"),
        ),
    };
    println!("{message}");
    ExitCode::from(code)
}

/// The exit status and the message for `subject` in `state`.
fn judge(state: &NetworkState, subject: &Subject) -> (u8, String) {
    let Some(verdict) = state.verdict(subject) else {
        return (
            CHECK_UNKNOWN,
            format!("{subject} is not known to the agent: is it configured?"),
        );
    };
    let code = match verdict.health {
        Health::Up => CHECK_OK,
        Health::Down | Health::Degraded => CHECK_PROBLEM,
        Health::Unknown => CHECK_UNKNOWN,
    };
    (
        code,
        format!(
            "{subject} is {} ({})",
            verdict.health.as_str(),
            reasons(verdict)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Verdict;

    #[test]
    fn each_verdict_has_its_plugin_status() {
        let mut state = NetworkState::initial(0);
        for (health, code) in [
            (Health::Up, CHECK_OK),
            (Health::Degraded, CHECK_PROBLEM),
            (Health::Down, CHECK_PROBLEM),
            (Health::Unknown, CHECK_UNKNOWN),
        ] {
            state.host = Verdict {
                health,
                reasons: vec!["because".into()],
                since_ns: 0,
            };
            let (got, message) = judge(&state, &Subject::Host);
            assert_eq!(got, code, "{health:?}");
            assert_eq!(message, format!("host is {} (because)", health.as_str()));
        }
        let (code, message) = judge(&state, &Subject::Endpoint("db".into()));
        assert_eq!(code, CHECK_UNKNOWN);
        assert!(message.contains("endpoint:db is not known"), "{message}");
    }
}
