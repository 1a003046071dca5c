//! Whether a failure is worth retrying: told by the caller, or read from the error's source
//! chain (I/O error kinds, and [`HttpStatus`] for an HTTP layer).

use std::{
    error::Error,
    io,
    time::{Duration, SystemTime},
};

/// What a failure says about trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// May well succeed next time: retry after the scheduled delay.
    Transient,
    /// Transient, and the peer's host answered: a refused connection (a RST for the SYN, or
    /// a port unreachable). The path works, so it is retried on the schedule even while the
    /// network is Down: when the subject is an endpoint the agent judges by its connections,
    /// that Down comes from these very refusals, and only the next connection can clear it.
    Refused,
    /// Transient, and the attempt ran out of time: retried the same way, but it costs the
    /// retry budget double (it held a connection for its whole length).
    Timeout,
    /// Will fail again however often it is tried (credentials, permission, nothing there).
    Permanent,
    /// The server said when to come back: retry after exactly this, not the schedule's delay.
    RetryAfter(Duration),
}

/// An HTTP response that failed, as an HTTP layer reports it: return it, or put it in the
/// source chain of the error the operation returns, and the default classification reads the
/// status and Retry-After from it. (netwatch has no HTTP client of its own.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server answered HTTP {status}{}", retry_after.map(|d| format!(" (retry after {})", humantime::format_duration(d))).unwrap_or_default())]
pub struct HttpStatus {
    pub status: u16,
    /// The Retry-After header, as a delay from when the response arrived.
    pub retry_after: Option<Duration>,
}

impl HttpStatus {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }

    /// With the delay from a Retry-After header's value, if it is one (see [`retry_after`]).
    pub fn with_retry_after_header(mut self, value: &str, now: SystemTime) -> Self {
        self.retry_after = retry_after(value, now);
        self
    }

    /// 429 and 503 honour Retry-After (RFC 9110 §15.5.30, §15.6.4); 408 and 504 are
    /// timeouts; other 5xx are transient; 401, 403, 404 and every other status are permanent.
    pub fn class(&self) -> ErrorClass {
        match (self.status, self.retry_after) {
            (429 | 503, Some(delay)) => ErrorClass::RetryAfter(delay),
            (429 | 503, None) => ErrorClass::Transient,
            (408 | 504, _) => ErrorClass::Timeout,
            (500..=599, _) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// A Retry-After header's value as a delay from `now`: delay-seconds or an HTTP-date
/// (RFC 9110 §10.2.3). A date in the past is no delay; anything else is `None`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The default classification: the first error in the source chain, outermost first, that
/// says something decides. [`HttpStatus`] by its status; `std::io::Error` by its kind:
/// refused is [`ErrorClass::Refused`]; reset, aborted, unreachable, network down and broken
/// connections are transient,
/// timed out is a timeout; permission denied, not found, a name too long, no space or quota
/// left, a read-only file system and the like are permanent (a retry fails the same way),
/// and so is a DNS
/// lookup failure; `tokio::time::error::Elapsed` is a timeout. A chain that says nothing is
/// transient: a failure netwatch cannot name is most often the network's.
pub fn classify(error: &(dyn Error + 'static)) -> ErrorClass {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(class) = classify_one(error) {
            return class;
        }
        next = error.source();
    }
    ErrorClass::Transient
}

fn classify_one(error: &(dyn Error + 'static)) -> Option<ErrorClass> {
    if let Some(http) = error.downcast_ref::<HttpStatus>() {
        return Some(http.class());
    }
    if error.is::<tokio::time::error::Elapsed>() {
        return Some(ErrorClass::Timeout);
    }
    let io = error.downcast_ref::<io::Error>()?;
    use io::ErrorKind::*;
    match io.kind() {
        ConnectionRefused => Some(ErrorClass::Refused),
        ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | AddrNotAvailable
        | NetworkUnreachable | HostUnreachable | NetworkDown | UnexpectedEof | Interrupted
        | WouldBlock => Some(ErrorClass::Transient),
        TimedOut => Some(ErrorClass::Timeout),
        PermissionDenied | NotFound | InvalidFilename | StorageFull | QuotaExceeded
        | ReadOnlyFilesystem | IsADirectory | NotADirectory | FileTooLarge | InvalidInput => {
            Some(ErrorClass::Permanent)
        }
        // getaddrinfo's failures carry no kind of their own; std names them thus
        // (library/std/src/sys/net/connection/socket.rs).
        _ if io
            .to_string()
            .starts_with("failed to lookup address information") =>
        {
            Some(ErrorClass::Transient)
        }
        // An error wrapped in an `io::Error` is not its `source()`: look inside.
        _ => io.get_ref().and_then(|inner| classify_one(inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("download failed")]
    struct Wrapper(#[source] Box<dyn Error + Send + Sync>);

    fn class_of(error: impl Error + Send + Sync + 'static) -> ErrorClass {
        classify(&Wrapper(Box::new(error)))
    }

    #[test]
    fn connection_failures_are_transient_and_timeouts_cost_more() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::NetworkUnreachable,
        ] {
            assert_eq!(class_of(io::Error::from(kind)), ErrorClass::Transient);
        }
        // The peer's host answered: transient, and told apart (see `run`).
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(class_of(refused), ErrorClass::Refused);
        // Inside an HTTP client's own error.
        let wrapped = io::Error::other(Wrapper(Box::new(io::Error::from(
            io::ErrorKind::ConnectionRefused,
        ))));
        assert_eq!(class_of(wrapped), ErrorClass::Refused);
        assert_eq!(
            class_of(io::Error::from(io::ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
    }

    #[test]
    fn a_dns_failure_is_transient_even_though_std_gives_it_no_kind() {
        // What `ToSocketAddrs` returns for an unknown name (not looked up here: no traffic
        // leaves a test).
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(class_of(dns), ErrorClass::Transient);
    }

    #[test]
    fn permission_and_not_found_are_permanent() {
        assert_eq!(
            class_of(io::Error::from(io::ErrorKind::PermissionDenied)),
            ErrorClass::Permanent
        );
        assert_eq!(class_of(HttpStatus::new(404)), ErrorClass::Permanent);
        assert_eq!(class_of(HttpStatus::new(401)), ErrorClass::Permanent);
    }

    #[test]
    fn local_errors_a_retry_cannot_fix_are_permanent() {
        for errno in [
            libc::ENAMETOOLONG,
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EROFS,
            libc::EISDIR,
        ] {
            assert_eq!(
                class_of(io::Error::from_raw_os_error(errno)),
                ErrorClass::Permanent,
                "errno {errno}"
            );
        }
    }

    #[test]
    fn throttling_statuses_honour_retry_after_inside_an_io_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let busy = HttpStatus::new(503).with_retry_after_header("7", now);
        assert_eq!(
            class_of(io::Error::other(busy)),
            ErrorClass::RetryAfter(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            HttpStatus::new(429)
                .with_retry_after_header(&date, now)
                .class(),
            ErrorClass::RetryAfter(Duration::from_secs(90))
        );
        assert_eq!(HttpStatus::new(429).class(), ErrorClass::Transient);
        assert_eq!(retry_after("soon", now), None);
    }
}
