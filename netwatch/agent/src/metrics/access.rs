//! Who may scrape: what the web configuration asks of each connection (TLS, basic auth, both
//! or neither) and the answer to a scraper that did not authenticate.

use std::sync::Arc;

use hyper::{header::WWW_AUTHENTICATE, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::{auth::BasicAuth, WebConfig};

/// A connection's byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What every connection must pass; the default asks nothing (loopback without a web config).
#[derive(Clone, Default)]
pub struct Access {
    pub tls: Option<TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl Access {
    pub fn new(web: Option<&WebConfig>) -> Self {
        let Some(web) = web else {
            return Self::default();
        };
        Self {
            tls: web.tls.clone().map(TlsAcceptor::from),
            auth: (!web.users.is_empty()).then(|| Arc::new(BasicAuth::new(web.users.clone()))),
        }
    }
}

/// 401 with the challenge that makes a browser or curl ask for a password.
pub fn unauthorized() -> Response<String> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(WWW_AUTHENTICATE, "Basic realm=\"netwatch\"")
        .body("unauthorized: netwatch's metrics need a user and password\n".to_string())
        .expect("constant headers are valid")
}
