//! The HTTP side: what ccache's `http` remote storage and Bazel's `--remote_cache=http://…`
//! send, and the part of WebDAV sccache uses. GET and HEAD look an entry up (200 or 404),
//! PUT stores one (201), DELETE forgets it here, MKCOL succeeds (directories are implicit);
//! `/_netwatch/status` (JSON) and `/_netwatch/metrics` (Prometheus) report.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    cache::{BuildCache, StoreFailure},
    quick_ack::QuickAck,
    stats::Stats,
    EntryKey,
};

/// Connections served at once: a parallel build opens one or a few per compiler process.
const MAX_CONNECTIONS: usize = 512;
/// A client that sends no request headers for this long (idle between requests, too) is
/// dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the server's own pages live; no build tool uses this prefix.
const STATUS: &str = "/_netwatch/status";
const METRICS: &str = "/_netwatch/metrics";

type Answer = Response<Full<Bytes>>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "the build cache listens only on loopback (any local user could otherwise read and \
         write it from the network): {addr} is not; use 127.0.0.1 or [::1]"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}{}", if source.kind() == io::ErrorKind::AddrInUse { ": another program (another cache server?) listens there; pick a free port with --listen" } else { "" })]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Binds the listener, on loopback only.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if !addr.ip().is_loopback() {
        return Err(ListenError::NotLoopback { addr });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// Serves until `cancel`; returns only then or on an accept error it cannot survive.
pub async fn serve(
    listener: TcpListener,
    cache: Arc<BuildCache>,
    cancel: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
        };
        let stream = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if is_transient(&error) => {
                    tracing::debug!(%error, "build cache: accept failed; going on");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        let _ = stream.set_nodelay(true);
        let cache = Arc::clone(&cache);
        let service = service_fn(move |request| {
            let cache = Arc::clone(&cache);
            async move { Ok::<_, Infallible>(answer(&cache, request).await) }
        });
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(QuickAck(stream)), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "build cache: a connection ended with an error");
            }
            drop(slot);
        });
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}

/// Out of descriptors, for the process or the system: connections close, and it passes.
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;

async fn answer(cache: &BuildCache, request: Request<hyper::body::Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    if path == STATUS || path == METRICS {
        if request.method() != Method::GET {
            return not_allowed("GET");
        }
        let snapshot = cache.snapshot();
        return if path == STATUS {
            let json = serde_json::to_vec(&snapshot).expect("figures serialise");
            plain(StatusCode::OK, "application/json", json)
        } else {
            plain(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                snapshot.prometheus().into_bytes(),
            )
        };
    }
    // WebDAV clients (sccache through OpenDAL) make each entry's directories before a PUT;
    // entries are named by whole paths here, so every collection exists already.
    if request.method().as_str() == "MKCOL" {
        return plain(StatusCode::CREATED, "text/plain", Vec::new());
    }
    if request.method().as_str() == "PROPFIND" && path.ends_with('/') {
        return collection(&path);
    }
    let key = match EntryKey::from_path(&path) {
        Ok(key) => key,
        Err(why) => {
            let method = request.method();
            return refused(
                cache,
                StatusCode::BAD_REQUEST,
                &format!("{method} {path}: {why}"),
            );
        }
    };
    match *request.method() {
        Method::GET | Method::HEAD => {
            let head = request.method() == Method::HEAD;
            match cache.get(&key).await {
                Some((content, _)) => {
                    let len = content.len();
                    let body = if head { Bytes::new() } else { content };
                    let mut answer = Response::new(Full::new(body));
                    answer.headers_mut().insert(CONTENT_LENGTH, len.into());
                    answer
                }
                None => plain(StatusCode::NOT_FOUND, "text/plain", Vec::new()),
            }
        }
        Method::PUT => {
            let max = cache.max_entry();
            let declared = request
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            // The room the body may take, held until it is stored (a flood of large PUTs
            // waits for the budget instead of taking the host's memory); a body longer than
            // it said is cut at what it said.
            let room = declared.unwrap_or(max).min(max.saturating_add(1));
            let _room = cache.budget().room(room).await;
            let limit = usize::try_from(room.min(max)).unwrap_or(usize::MAX);
            let body = match Limited::new(request.into_body(), limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    return refused(
                        cache,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                        "{path}: more than the {limit} bytes an entry may have (--max-entry-size)"
                    ),
                    )
                }
                Err(error) => {
                    tracing::debug!(%error, "build cache: a PUT body ended early");
                    return plain(StatusCode::BAD_REQUEST, "text/plain", Vec::new());
                }
            };
            match cache.put(&key, &body).await {
                Ok(()) => plain(StatusCode::CREATED, "text/plain", Vec::new()),
                Err(StoreFailure::Refused(why)) => {
                    refused(cache, StatusCode::BAD_REQUEST, &format!("{path}: {why}"))
                }
                Err(error) => {
                    tracing::warn!(%error, "build cache: a store failed");
                    plain(
                        StatusCode::INSUFFICIENT_STORAGE,
                        "text/plain",
                        error.to_string().into_bytes(),
                    )
                }
            }
        }
        Method::DELETE => match cache.remove(&key).await {
            Ok(_) => plain(StatusCode::NO_CONTENT, "text/plain", Vec::new()),
            Err(error) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                error.to_string().into_bytes(),
            ),
        },
        _ => not_allowed("GET, HEAD, PUT, DELETE, MKCOL"),
    }
}

/// A WebDAV collection that exists: the answer to PROPFIND on a directory, so that a
/// client does not make it first.
fn collection(path: &str) -> Answer {
    let href: String = path
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '&' | '"' | '\''))
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype><D:getlastmodified>Thu, 01 Jan 1970 00:00:00 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>\n"
    );
    let status = StatusCode::from_u16(207).expect("207 is a status");
    plain(status, "application/xml; charset=utf-8", xml.into_bytes())
}

fn plain(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("a valid header"));
    answer
}

fn refused(cache: &BuildCache, status: StatusCode, why: &str) -> Answer {
    Stats::count(&cache.stats().refused);
    tracing::debug!(why, "build cache: refused a request");
    plain(status, "text/plain", format!("{why}\n").into_bytes())
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Vec::new());
    answer
        .headers_mut()
        .insert(ALLOW, allow.parse().expect("a valid header"));
    answer
}

/// The figures of the server at `addr` (what `--status` prints).
pub async fn fetch_status(addr: SocketAddr) -> Result<crate::Snapshot, StatusError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {STATUS} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.take(1 << 20).read_to_end(&mut reply).await?;
        Ok::<_, io::Error>(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| StatusError::Slow { addr })?
        .map_err(|source| StatusError::Connect { addr, source })?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(StatusError::NotOurs { addr });
    }
    serde_json::from_str(body).map_err(|_| StatusError::NotOurs { addr })
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no build cache server answers at {addr}: {source}; start one with `netwatch cache-server`, or name its address with --listen")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("the server at {addr} did not answer within 5 s")]
    Slow { addr: SocketAddr },
    #[error("what answers at {addr} is not a netwatch build cache server")]
    NotOurs { addr: SocketAddr },
}
