//! `netwatch watch`: verdict changes as they happen, one line per changed subject.

use std::{borrow::Cow, path::Path, process::ExitCode};

use super::{
    format::{time_of_day, Style},
    remote::{self, emit, stdout_is_terminal, CommandError},
    status::reasons,
    PathArgs,
};
use crate::{
    client::{Client, ClientError, Clock},
    server::protocol::Reply,
    settings::Settings,
    state::{NetworkState, Subject, Verdict},
};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub paths: PathArgs,

    /// Print the protocol's `state` and `change` replies, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run_watch(args: &WatchArgs, settings: &Settings) -> ExitCode {
    remote::run(watch(args, &settings.socket))
}

/// Runs until the agent goes away, which is an error: a watcher expects it to stay.
async fn watch(args: &WatchArgs, socket: &Path) -> Result<ExitCode, CommandError> {
    let path = socket;
    let (initial, mut changes) = Client::connect(path).await?.changes().await?;
    let style = Style {
        color: stdout_is_terminal(),
    };
    if args.json {
        emit(&json_line(Reply::State {
            at_unix_ms: initial.clock.at_unix_ms,
            now_ns: initial.clock.now_ns,
            state: Cow::Borrowed(&initial.state),
        }))?;
    } else {
        for line in current_lines(&initial.state, &initial.clock, style) {
            emit(&line)?;
        }
    }
    let mut last = initial.state;
    while let Some(change) = changes.next().await? {
        if args.json {
            emit(&json_line(Reply::Change {
                subjects: change.subjects.iter().map(ToString::to_string).collect(),
                at_unix_ms: change.clock.at_unix_ms,
                now_ns: change.clock.now_ns,
                state: Cow::Borrowed(&change.state),
            }))?;
        } else {
            for subject in &change.subjects {
                emit(&change_line(
                    subject,
                    &last,
                    &change.state,
                    &change.clock,
                    style,
                ))?;
            }
        }
        last = change.state;
    }
    Err(ClientError::Closed {
        path: path.to_path_buf(),
    }
    .into())
}

fn json_line(reply: Reply<'_>) -> String {
    let line = reply.to_line();
    String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned()
}

/// Where things stand when watching starts: one line per subject, at the agent's time.
fn current_lines(state: &NetworkState, clock: &Clock, style: Style) -> Vec<String> {
    let time = time_of_day(clock.at_unix_ms);
    std::iter::once(Subject::Host)
        .chain(state.links.keys().cloned().map(Subject::Link))
        .chain(state.endpoints.keys().cloned().map(Subject::Endpoint))
        .map(|subject| {
            let verdict = state.verdict(&subject);
            line(&time, &subject, None, verdict, style)
        })
        .collect()
}

/// `12:00:01.234 link:eth0 up -> down (no carrier)`. The time is when the health changed,
/// or when the agent sent the change if only the reasons did (or the subject went).
fn change_line(
    subject: &Subject,
    before: &NetworkState,
    after: &NetworkState,
    clock: &Clock,
    style: Style,
) -> String {
    let old = before.verdict(subject);
    let new = after.verdict(subject);
    let unix_ms = match (old, new) {
        (Some(old), Some(new)) if old.health == new.health => clock.at_unix_ms,
        (_, Some(new)) => clock.unix_ms_of(new.since_ns),
        (_, None) => clock.at_unix_ms,
    };
    let from = old.map_or_else(|| "new".to_string(), |v| style.health(v.health));
    line(&time_of_day(unix_ms), subject, Some(from), new, style)
}

fn line(
    time: &str,
    subject: &Subject,
    from: Option<String>,
    to: Option<&Verdict>,
    style: Style,
) -> String {
    let to_text = to.map_or_else(|| "gone".to_string(), |v| style.health(v.health));
    let mut text = match from {
        Some(from) => format!("{time} {subject} {from} -> {to_text}"),
        None => format!("{time} {subject} {to_text}"),
    };
    if let Some(verdict) = to.filter(|v| !v.reasons.is_empty()) {
        text.push_str(&format!(" ({})", reasons(verdict)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_agent::state::Health;

    fn state(host: Health, since_s: u64, reason: &str) -> NetworkState {
        let mut state = NetworkState::initial(0);
        state.host = Verdict {
            health: host,
            reasons: vec![reason.to_string()],
            since_ns: since_s * 1_000_000_000,
        };
        state
    }

    #[test]
    fn a_change_line_shows_the_transition_and_the_new_reasons() {
        let before = state(Health::Up, 1, "ok");
        let after = state(Health::Down, 99, "no default route");
        let clock = Clock {
            at_unix_ms: 1_700_000_000_500,
            now_ns: 100_000_000_000,
        };
        let line = change_line(&Subject::Host, &before, &after, &clock, Style::PLAIN);
        // The health changed at since_ns: one second before the reply.
        let time = time_of_day(1_699_999_999_500);
        assert_eq!(line, format!("{time} host up -> down (no default route)"));
    }

    #[test]
    fn a_subject_that_appears_or_goes_is_said_so() {
        let before = NetworkState::initial(0);
        let mut after = NetworkState::initial(0);
        after.endpoints.insert(
            "api".into(),
            netwatch_agent::state::EndpointStatus {
                name: "api".into(),
                address: "10.0.0.1:443".into(),
                verdict: Verdict::unknown("no traffic yet", 0),
                via: None,
                retransmits: 0,
            },
        );
        let clock = Clock {
            at_unix_ms: 0,
            now_ns: 0,
        };
        let api = Subject::Endpoint("api".into());
        let appeared = change_line(&api, &before, &after, &clock, Style::PLAIN);
        assert!(
            appeared.ends_with("endpoint:api new -> unknown (no traffic yet)"),
            "{appeared}"
        );
        let went = change_line(&api, &after, &before, &clock, Style::PLAIN);
        assert!(went.ends_with("endpoint:api unknown -> gone"), "{went}");
    }

    #[test]
    fn watching_starts_with_every_subject_as_it_stands() {
        let lines = current_lines(
            &state(Health::Up, 0, "ok"),
            &Clock {
                at_unix_ms: 0,
                now_ns: 0,
            },
            Style::PLAIN,
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with(" host up (ok)"), "{}", lines[0]);
    }
}
