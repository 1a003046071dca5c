//! Downloads a file over plain HTTP, retrying with netwatch's network-aware retry: while the
//! running agent says the host is Down, failures cost no attempt and the download waits, then
//! starts again the moment the network is back. Without an agent it is plain backoff.
//!
//! ```text
//! cargo run -p netwatch-client --example download -- http://127.0.0.1:8080/app.tar app.tar
//! ```
//!
//! The agent's socket is `NETWATCH_SOCKET`, else `/run/netwatch/netwatch.sock`. Only
//! `http://host:port/path` is understood: the point is the retry, not HTTP.

use std::{io, path::PathBuf, process::ExitCode};

use netwatch_client::{
    retry::{AgentSource, HttpStatus, RetryPolicy, Retryer},
    state::Subject,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: download http://HOST:PORT/PATH OUT");
        return ExitCode::from(2);
    };
    let Some((authority, path)) = split_url(&url) else {
        eprintln!("error: `{url}` is not a URL like http://127.0.0.1:8080/file");
        return ExitCode::from(2);
    };
    let retryer = Retryer::new(RetryPolicy::default())
        .with_state(AgentSource::default_socket(), Subject::Host);
    let fetched = retryer
        .run(|attempt| {
            eprintln!("attempt {} (call {})", attempt.number, attempt.call);
            fetch(authority, path)
        })
        .await;
    match fetched {
        Ok((body, report)) => {
            if let Err(e) = std::fs::write(PathBuf::from(&out), &body) {
                eprintln!("error: writing {out}: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!(
                "{} bytes in {:.1?}: {} attempts, {:.1?} waiting for the network",
                body.len(),
                report.elapsed,
                report.attempts,
                report.network_wait
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `http://host:port/path` into `host:port` and `/path`.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    let path = if path.is_empty() { "/" } else { path };
    (!authority.is_empty()).then_some((authority, path))
}

/// One HTTP/1.0 GET: the body of a 200, else an error the retry classifies (a 404 is not
/// retried, a 503 is; `HttpStatus` in the error tells it which).
async fn fetch(authority: &str, path: &str) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no complete header",
        ));
    };
    let header = String::from_utf8_lossy(&response[..end]);
    let code = header
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    match code {
        Some(200) => {}
        Some(status) => return Err(io::Error::other(HttpStatus::new(status))),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an HTTP response",
            ))
        }
    }
    Ok(response.split_off(end + 4))
}
