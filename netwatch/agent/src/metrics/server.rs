//! The HTTP side of the exporter: `GET /metrics`, HTTP/1 through hyper, over TLS and behind
//! basic auth when the web configuration asks for them.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{
    header::{ALLOW, AUTHORIZATION, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};

use super::{
    access::{unauthorized, Access, Stream},
    render, text, AgentCosts,
};
use crate::state::StateWatch;

/// Connections served at once; more wait to be accepted. A scraper needs one: the cap keeps a
/// local client from making the agent hold thousands of sockets, and is wide enough that a
/// few slow ones cannot hold it (each is dropped after `HEADER_TIMEOUT`).
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request headers by then is dropped: a scrape sends them at
/// once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a whole metrics exchange may take, reply included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot serve metrics on {addr}{}", bind_hint(source))]
    Bind { addr: SocketAddr, source: io::Error },
}

fn bind_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::AddrInUse => {
            ": another process (another netwatch agent?) listens there; set [metrics] listen to \
             a free port, or enabled = false"
        }
        io::ErrorKind::AddrNotAvailable => {
            ": no interface has that address; set [metrics] listen to 127.0.0.1 or [::1]"
        }
        _ => "",
    }
}

/// Binds the exporter's listener (the caller checks the address is loopback, or that the web
/// configuration guards it: [`super::WebConfig::check_exposure`]).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Answers `GET /metrics` on `listener` with the current state and costs until the state's
/// source closes (the agent is stopping), which returns `Ok`. Fails only if accepting does,
/// for a reason other than a client that went away or a momentary lack of descriptors.
pub async fn serve(
    listener: TcpListener,
    access: Access,
    state: StateWatch,
    costs: watch::Receiver<Arc<AgentCosts>>,
) -> io::Result<()> {
    let mut source = state.clone();
    tokio::select! {
        result = accept(listener, access, state, costs) => result,
        () = async { while source.changed().await.is_some() {} } => Ok(()),
    }
}

/// Serves each connection in a task of its own; returns only on an accept error it cannot
/// survive.
async fn accept(
    listener: TcpListener,
    access: Access,
    state: StateWatch,
    costs: watch::Receiver<Arc<AgentCosts>>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                retry_accept(error).await?;
                continue;
            }
        };
        let state = state.clone();
        let costs = costs.clone();
        let auth = access.auth.clone();
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let (state, costs, auth) = (state.clone(), costs.clone(), auth.clone());
            async move {
                if let Some(auth) = auth {
                    let given = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                    if !auth.allows(given).await {
                        return Ok::<_, Infallible>(unauthorized());
                    }
                }
                Ok(respond(&request, &state, &costs))
            }
        });
        let tls = access.tls.clone();
        tokio::spawn(async move {
            let exchange = async {
                let stream: Box<dyn Stream> = match tls {
                    None => Box::new(stream),
                    // A handshake gets the time headers get: a client that opens connections
                    // and never finishes one must not hold the slots for the whole exchange's.
                    Some(acceptor) => {
                        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => Box::new(stream),
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "metrics: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("metrics: TLS handshake took too long: closed");
                                return;
                            }
                        }
                    }
                };
                // One request per connection: an idle keep-alive would hold a slot.
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            };
            // A client that asks and never reads (or never finishes its handshake) would hold
            // its slot for ever: the whole exchange gets a bound, not only the headers.
            if tokio::time::timeout(CONNECTION_TIMEOUT, exchange)
                .await
                .is_err()
            {
                tracing::debug!("metrics connection took too long: closed");
            }
            drop(slot);
        });
    }
}

/// Returns `Ok` after an accept error the listener survives, waiting first if it is a lack of
/// resources (as tokio's and hyper's examples do: retrying at once would spin).
async fn retry_accept(error: io::Error) -> io::Result<()> {
    match error.kind() {
        // The client gave up before it was accepted.
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => Ok(()),
        _ if matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        ) =>
        {
            tracing::warn!(%error, "metrics: cannot accept a connection; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
        _ => Err(error),
    }
}

fn respond<B>(
    request: &Request<B>,
    state: &StateWatch,
    costs: &watch::Receiver<Arc<AgentCosts>>,
) -> Response<String> {
    let builder = Response::builder();
    let response = match (request.uri().path(), request.method()) {
        ("/metrics", &Method::GET | &Method::HEAD) => {
            let costs = Arc::clone(&costs.borrow());
            builder
                .header(CONTENT_TYPE, text::CONTENT_TYPE)
                .body(render(&state.current(), &costs))
        }
        ("/metrics", _) => builder
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(ALLOW, "GET, HEAD")
            .body("only GET and HEAD\n".to_string()),
        _ => builder
            .status(StatusCode::NOT_FOUND)
            .body("not found: netwatch serves /metrics\n".to_string()),
    };
    response.expect("constant headers are valid")
}
