//! One client connection: reads request lines, answers them, and bounds what a slow, idle or
//! hostile client can cost (one line of input, one reply of output, a few timers).

use std::{borrow::Cow, io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixStream,
    },
};

use super::{
    protocol::{Clock, Reply, Request, WaitStatus, MAX_LINE},
    Demand,
};
use crate::state::{Health, NetworkState, StateWatch, Subject, WaitOutcome};

/// What one connection may cost.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Connections served at once, per user and in all; more are told so and closed.
    pub slots: super::slots::SlotLimits,
    /// A connection with no request in flight and no subscription is closed after this.
    pub idle: Duration,
    /// A reply the client does not take within this closes the connection.
    pub write_timeout: Duration,
}

impl Limits {
    pub(super) const DEFAULT: Self = Self {
        slots: super::slots::SlotLimits {
            total: 256,
            reserved_for_root: 32,
            per_uid: 64,
        },
        // A client sends its request as soon as it connects.
        idle: Duration::from_secs(30),
        write_timeout: Duration::from_secs(10),
    };
}

/// Serves one client until it leaves, misbehaves, or the state source goes away.
pub(super) async fn run(
    stream: UnixStream,
    state: StateWatch,
    demand: Demand,
    limits: Limits,
) -> io::Result<()> {
    let (read, write) = stream.into_split();
    let mut connection = Connection {
        lines: LineReader::new(read),
        out: Writer {
            half: write,
            timeout: limits.write_timeout,
        },
        state,
        demand,
        idle: limits.idle,
    };
    connection.serve().await
}

struct Connection {
    lines: LineReader<OwnedReadHalf>,
    out: Writer,
    state: StateWatch,
    demand: Demand,
    idle: Duration,
}

/// What to do after reading a line.
enum Next {
    Serve(Request),
    Refuse(String),
    Close(String),
    Skip,
    Stop,
}

impl Connection {
    async fn serve(&mut self) -> io::Result<()> {
        loop {
            let next = match tokio::time::timeout(self.idle, self.lines.next()).await {
                Ok(line) => classify(line?),
                Err(_) => Next::Close(format!(
                    "no request for {}s: closing the connection; reconnect to send more",
                    self.idle.as_secs()
                )),
            };
            match next {
                Next::Serve(Request::Get) => {
                    let state = self.state.current();
                    self.out.send(&state_reply(&state)).await?;
                }
                Next::Serve(Request::Subscribe) => return self.subscribe().await,
                Next::Serve(Request::Wait { subject, timeout }) => {
                    if !self.wait(&subject, timeout).await? {
                        return Ok(());
                    }
                }
                Next::Refuse(error) => self.out.error(error).await?,
                Next::Close(error) => return self.out.error(error).await,
                Next::Skip => {}
                Next::Stop => return Ok(()),
            }
        }
    }

    /// The state now, then a change line whenever a verdict changes. The watch channel keeps
    /// only the latest state, so a slow subscriber skips intermediate ones instead of queueing
    /// them: each change line carries the full state, and its subjects are those that differ
    /// from the last state this client was sent.
    async fn subscribe(&mut self) -> io::Result<()> {
        let mut watch = self.state.clone();
        let mut sent = watch.current();
        self.out.send(&state_reply(&sent)).await?;
        loop {
            tokio::select! {
                next = watch.changed() => {
                    let Some(now) = next else {
                        return Ok(());
                    };
                    let subjects = now.changes_since(&sent);
                    if subjects.is_empty() {
                        continue;
                    }
                    let clock = Clock::now();
                    let reply = Reply::Change {
                        subjects: subjects.iter().map(ToString::to_string).collect(),
                        at_unix_ms: clock.at_unix_ms,
                        now_ns: clock.now_ns,
                        state: Cow::Borrowed(&now),
                    };
                    self.out.send(&reply).await?;
                    sent = now;
                }
                line = self.lines.next() => match classify(line?) {
                    Next::Stop => return Ok(()),
                    Next::Close(error) => return self.out.error(error).await,
                    Next::Skip => {}
                    Next::Serve(_) | Next::Refuse(_) => {
                        self.out.error(
                            "this connection is subscribed and only sends changes now: \
                             open another connection for other requests"
                                .to_string(),
                        )
                        .await?;
                    }
                },
            }
        }
    }

    /// Answers a wait; `false` when the connection should close.
    async fn wait(&mut self, subject: &Subject, timeout: Duration) -> io::Result<bool> {
        let mut watch = self.state.clone();
        let outcome = tokio::select! {
            outcome = watch.wait_for_up(subject, timeout) => outcome,
            () = self.lines.closed() => return Ok(false),
            () = self.demand.while_unknown(&self.state, subject) => unreachable!("runs until cancelled"),
        };
        let (outcome, verdict) = match outcome {
            WaitOutcome::Up(verdict) => (WaitStatus::Up, Some(verdict)),
            WaitOutcome::TimedOut(verdict) => {
                let down = verdict.as_ref().is_some_and(|v| v.health == Health::Down);
                let status = if down {
                    WaitStatus::Down
                } else {
                    WaitStatus::Timeout
                };
                (status, verdict)
            }
            WaitOutcome::SourceClosed => {
                self.out
                    .error("the agent is stopping: no more state to wait on".to_string())
                    .await?;
                return Ok(false);
            }
        };
        let clock = Clock::now();
        let reply = Reply::Wait {
            outcome,
            verdict,
            at_unix_ms: clock.at_unix_ms,
            now_ns: clock.now_ns,
        };
        self.out.send(&reply).await?;
        Ok(true)
    }
}

fn classify(line: Line<'_>) -> Next {
    match line {
        Line::Eof => Next::Stop,
        Line::TooLong => Next::Close(format!(
            "request line longer than {MAX_LINE} bytes: closing the connection; \
             send one JSON object per line, at most 64 KiB each"
        )),
        Line::Complete(bytes) if bytes.trim_ascii().is_empty() => Next::Skip,
        Line::Complete(bytes) => match Request::parse(bytes) {
            Ok(request) => Next::Serve(request),
            Err(error) => Next::Refuse(error),
        },
    }
}

fn state_reply(state: &Arc<NetworkState>) -> Reply<'_> {
    let clock = Clock::now();
    Reply::State {
        at_unix_ms: clock.at_unix_ms,
        now_ns: clock.now_ns,
        state: Cow::Borrowed(state),
    }
}

/// The write half, with the backpressure policy: a reply the client does not read within the
/// timeout ends the connection instead of being buffered.
struct Writer {
    half: OwnedWriteHalf,
    timeout: Duration,
}

impl Writer {
    async fn send(&mut self, reply: &Reply<'_>) -> io::Result<()> {
        let line = reply.to_line();
        match tokio::time::timeout(self.timeout, self.half.write_all(&line)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {}s: closing the connection",
                    self.timeout.as_secs()
                ),
            )),
        }
    }

    async fn error(&mut self, error: String) -> io::Result<()> {
        self.send(&Reply::Error {
            error: Cow::Owned(error),
        })
        .await
    }
}

/// A line read by [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// A whole line, without its `\n` (the last one may lack it).
    Complete(&'a [u8]),
    /// More than [`MAX_LINE`] bytes without a `\n`.
    TooLong,
    Eof,
}

/// Reads lines of at most [`MAX_LINE`] bytes. `next` is cancel-safe (a partial line is kept
/// for the next call), so it can race other events in `select!`.
pub(super) struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    /// `buf` holds a line already returned.
    returned: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(super) fn new(read: R) -> Self {
        Self {
            reader: BufReader::new(read),
            buf: Vec::new(),
            returned: false,
            eof: false,
        }
    }

    pub(super) async fn next(&mut self) -> io::Result<Line<'_>> {
        if self.returned {
            self.buf.clear();
            self.returned = false;
        }
        loop {
            if self.eof {
                return Ok(Line::Eof);
            }
            // One byte more than a line may hold, for its `\n`.
            let limit = (MAX_LINE + 1).saturating_sub(self.buf.len()) as u64;
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .await?;
            if self.buf.last() == Some(&b'\n') {
                self.returned = true;
                let end = self.buf.len() - 1;
                return Ok(Line::Complete(&self.buf[..end]));
            }
            if self.buf.len() > MAX_LINE {
                return Ok(Line::TooLong);
            }
            if read == 0 {
                self.eof = true;
                if !self.buf.is_empty() {
                    self.returned = true;
                    return Ok(Line::Complete(&self.buf));
                }
            }
        }
    }

    /// Returns once the peer has closed its side (or the connection failed), without
    /// consuming input; pending input (a pipelined request) waits for the next `next`.
    pub(super) async fn closed(&mut self) {
        if self.eof {
            return;
        }
        match self.reader.fill_buf().await {
            Ok([]) | Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<String> {
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        loop {
            match reader.next().await.unwrap() {
                Line::Complete(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
                Line::TooLong => out.push("<too long>".to_string()),
                Line::Eof => return out,
            }
            if out.last().is_some_and(|l| l == "<too long>") {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_split_at_newlines_and_a_last_partial_line_counts() {
        assert_eq!(lines_of(b"a\n\nbc\nd").await, ["a", "", "bc", "d"]);
        assert_eq!(lines_of(b"").await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        assert_eq!(lines_of(&input).await[0].len(), MAX_LINE);
        let mut input = vec![b'x'; MAX_LINE + 1];
        input.push(b'\n');
        assert_eq!(lines_of(&input).await, ["<too long>"]);
    }
}
