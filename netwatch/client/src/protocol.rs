//! The wire protocol between the agent and its clients: one JSON object per line over a Unix
//! stream socket. `docs/protocol.md` describes every message; this file is its only encoder
//! and decoder, on both sides.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::{NetworkState, Subject, Verdict};

/// The longest request line the server reads, without its `\n`; a longer one closes the
/// connection.
pub const MAX_LINE: usize = 64 * 1024;

/// The longest timeout a wait may ask for. It bounds how long a connection is held, and keeps
/// deadline arithmetic far from overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

const KINDS: &str = r#""get", "subscribe" or "wait""#;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The current state, once.
    Get,
    /// The current state, then every change.
    Subscribe,
    /// Reply as soon as `subject` is Up, or at the timeout.
    Wait { subject: Subject, timeout: Duration },
}

impl Request {
    /// The request as one line, `\n` included.
    pub fn to_line(&self) -> String {
        let value = match self {
            Self::Get => serde_json::json!({ "request": "get" }),
            Self::Subscribe => serde_json::json!({ "request": "subscribe" }),
            Self::Wait { subject, timeout } => serde_json::json!({
                "request": "wait",
                "subject": subject.to_string(),
                "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        format!("{value}\n")
    }

    /// Reads one request line (without its `\n`). The error is the reply for the client: what
    /// was wrong, in which input, and what is expected. Unknown fields are ignored, so that
    /// newer clients can add optional ones.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(line).map_err(|e| {
            format!(
                "request is not UTF-8 (invalid byte at offset {}): send one UTF-8 JSON object per line",
                e.valid_up_to()
            )
        })?;
        let shown = excerpt(text.trim());
        let fail = |problem: String| format!("request `{shown}`: {problem}");
        let value: Value = serde_json::from_str(text).map_err(|e| {
            fail(format!(
                r#"not JSON ({e}): expected one JSON object per line, like {{"request":"get"}}"#
            ))
        })?;
        let Value::Object(fields) = value else {
            return Err(fail(
                r#"not a JSON object: expected one like {"request":"get"}"#.to_string(),
            ));
        };
        let kind = match fields.get("request") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => {
                return Err(fail(format!(
                    r#""request" is {other}, not a string: expected {KINDS}"#
                )))
            }
            None => return Err(fail(format!(r#"no "request" field: expected {KINDS}"#))),
        };
        match kind {
            "get" => Ok(Self::Get),
            "subscribe" => Ok(Self::Subscribe),
            "wait" => {
                let subject = match fields.get("subject") {
                    Some(Value::String(subject)) => subject.parse().map_err(fail)?,
                    other => {
                        return Err(fail(format!(
                            r#"a wait needs "subject": "host", "link:NAME" or "endpoint:NAME", got {}"#,
                            shown_field(other)
                        )))
                    }
                };
                let max = MAX_WAIT.as_millis();
                let timeout = fields
                    .get("timeout_ms")
                    .and_then(Value::as_u64)
                    .filter(|ms| u128::from(*ms) <= max)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        fail(format!(
                            r#"a wait needs "timeout_ms": a whole number of milliseconds from 0 to {max}, got {}"#,
                            shown_field(fields.get("timeout_ms"))
                        ))
                    })?;
                Ok(Self::Wait { subject, timeout })
            }
            other => Err(fail(format!(
                r#"unknown request "{}": expected {KINDS}"#,
                excerpt(other)
            ))),
        }
    }
}

fn shown_field(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_string(), |v| excerpt(&v.to_string()))
}

/// At most 80 characters of `text`, for error messages.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// How a wait ended, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitStatus {
    /// The subject is Up.
    Up,
    /// The timeout passed and the subject was not Down (nor Up).
    Timeout,
    /// The timeout passed and the subject was Down.
    Down,
}

/// What the server sends. The borrowed form is what the server writes, the owned
/// (`Reply<'static>`) what clients read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply<'a> {
    /// The whole state: the answer to `get`, and the first reply to `subscribe`.
    State {
        at_unix_ms: u64,
        now_ns: u64,
        state: Cow<'a, NetworkState>,
    },
    /// The state after a change, and which subjects' verdicts changed.
    Change {
        subjects: Vec<String>,
        at_unix_ms: u64,
        now_ns: u64,
        state: Cow<'a, NetworkState>,
    },
    /// The answer to `wait`.
    Wait {
        outcome: WaitStatus,
        verdict: Option<Verdict>,
        at_unix_ms: u64,
        now_ns: u64,
    },
    /// A request could not be served; the connection stays usable unless said otherwise.
    Error { error: Cow<'a, str> },
}

impl Reply<'_> {
    /// The reply's kind, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::State { .. } => "state",
            Self::Change { .. } => "change",
            Self::Wait { .. } => "wait",
            Self::Error { .. } => "error",
        }
    }

    /// The reply as one line, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing cannot fail: every map key is a string and no type has a fallible
        // Serialize; the fallback keeps that promise out of the server's control flow.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            format!(r#"{{"reply":"error","error":"internal: could not encode a reply: {e}"}}"#)
                .into_bytes()
        });
        line.push(b'\n');
        line
    }
}

/// The server's two clocks at the moment of a reply: `since_ns` in verdicts is
/// CLOCK_MONOTONIC, which means nothing to people; this converts it to wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Milliseconds since the Unix epoch (wall clock).
    pub at_unix_ms: u64,
    /// CLOCK_MONOTONIC nanoseconds, the clock of `since_ns`.
    pub now_ns: u64,
}

impl Clock {
    /// Both clocks, now.
    pub fn now() -> Self {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_unix_ms,
            now_ns: crate::clock::monotonic_ns(),
        }
    }

    /// How long before this moment `since_ns` was.
    pub fn age_of(&self, since_ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns.saturating_sub(since_ns))
    }

    /// `since_ns` as milliseconds since the Unix epoch.
    pub fn unix_ms_of(&self, since_ns: u64) -> u64 {
        let age_ms = self.now_ns.saturating_sub(since_ns) / 1_000_000;
        let ahead_ms = since_ns.saturating_sub(self.now_ns) / 1_000_000;
        self.at_unix_ms.saturating_sub(age_ms) + ahead_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, String> {
        Request::parse(line.as_bytes())
    }

    #[test]
    fn requests_round_trip_through_their_lines() {
        for request in [
            Request::Get,
            Request::Subscribe,
            Request::Wait {
                subject: Subject::Endpoint("api".into()),
                timeout: Duration::from_millis(1500),
            },
        ] {
            let line = request.to_line();
            assert!(line.ends_with('\n'));
            assert_eq!(parse(line.trim_end()), Ok(request));
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            parse(r#"{"request":"get","verbose":true}"#),
            Ok(Request::Get)
        );
    }

    #[test]
    fn each_bad_request_says_what_is_wrong_and_what_is_expected() {
        let cases = [
            ("{nope", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"get":1}"#, r#"no "request" field"#),
            (r#"{"request":7}"#, r#""request" is 7, not a string"#),
            (r#"{"request":"gte"}"#, r#"unknown request "gte""#),
            (
                r#"{"request":"wait","timeout_ms":5}"#,
                r#"a wait needs "subject""#,
            ),
            (
                r#"{"request":"wait","subject":"router","timeout_ms":5}"#,
                "`router` is not a subject",
            ),
            (
                r#"{"request":"wait","subject":"host","timeout_ms":-1}"#,
                r#"a wait needs "timeout_ms""#,
            ),
            (
                r#"{"request":"wait","subject":"host","timeout_ms":1e30}"#,
                "from 0 to 86400000",
            ),
        ];
        for (line, expected) in cases {
            let error = parse(line).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
            assert!(error.contains(line), "the error quotes the input: {error}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let error = Request::parse(b"{\"request\":\"g\xffet\"}").unwrap_err();
        assert!(error.contains("not UTF-8"), "{error}");
    }

    #[test]
    fn a_long_request_is_shown_shortened() {
        let line = format!(r#"{{"request":"{}"}}"#, "x".repeat(500));
        let error = parse(&line).unwrap_err();
        assert!(error.len() < 300, "{error}");
    }

    #[test]
    fn the_clock_converts_monotonic_times_to_wall_clock() {
        let clock = Clock {
            at_unix_ms: 1_700_000_000_000,
            now_ns: 50_000_000_000,
        };
        assert_eq!(clock.unix_ms_of(38_000_000_000), 1_699_999_988_000);
        assert_eq!(clock.age_of(38_000_000_000), Duration::from_secs(12));
        assert_eq!(clock.age_of(60_000_000_000), Duration::ZERO);
    }

    #[test]
    fn replies_round_trip_and_keep_the_state_form() {
        let state = NetworkState::initial(7);
        let reply = Reply::State {
            at_unix_ms: 1,
            now_ns: 2,
            state: Cow::Borrowed(&state),
        };
        let line = reply.to_line();
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["reply"], "state");
        assert_eq!(value["state"], serde_json::to_value(&state).unwrap());
        let back: Reply<'static> = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, reply);
    }
}
