//! An endpoint's address as written: an IP and port, or a host name and port (resolved later,
//! by whoever probes it: a name can move, so it is not pinned at load).

use std::{fmt, net::SocketAddr, str::FromStr};

/// `"198.18.0.2:8080"`, `"[fd00::2]:443"` or `"mirror.example:443"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    Ip(SocketAddr),
    Host { host: String, port: u16 },
}

/// Why a text is not an endpoint address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an endpoint address: expected {expected}")]
pub struct AddressError {
    pub text: String,
    /// The form that was expected, for people.
    pub expected: &'static str,
}

const HOST_PORT: &str =
    "host:port, like \"198.18.0.2:8080\", \"[fd00::2]:443\" or \"mirror.example:443\"";
const PORT: &str = "a port from 1 to 65535 after the last `:`";
const IPV6: &str = "an IPv6 address in brackets, like \"[fd00::2]:443\"";
const HOST: &str = "an IPv4 address like \"198.18.0.2\" or a host name like \"mirror.example\" \
                    (letters, digits, `-` and `_` in dot-separated labels) before the `:`";

impl EndpointAddress {
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(addr) => addr.port(),
            Self::Host { port, .. } => *port,
        }
    }
}

impl FromStr for EndpointAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |expected| AddressError {
            text: text.to_string(),
            expected,
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(fail(PORT)),
                _ => Ok(Self::Ip(addr)),
            };
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(fail(HOST_PORT));
        };
        if host.contains(':') || host.starts_with('[') {
            return Err(fail(IPV6));
        }
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(fail(PORT)),
            Ok(port) => port,
        };
        if !is_host_name(host) {
            return Err(fail(HOST));
        }
        Ok(Self::Host {
            host: host.to_string(),
            port,
        })
    }
}

/// RFC 1123 host name syntax (2.1), allowing `_` as resolvers do, and refusing an all-numeric
/// last label so that a mistyped IPv4 address is not taken for a name (RFC 3696 2).
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    host.len() <= 253
        && host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => addr.fmt(f),
            Self::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_each_form_parse_and_print_back() {
        for text in [
            "198.18.0.2:8080",
            "[fd00::2]:443",
            "mirror.example:443",
            "db_1:5432",
        ] {
            let address: EndpointAddress = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        assert!(matches!(
            "mirror.example:443".parse(),
            Ok(EndpointAddress::Host { port: 443, .. })
        ));
    }

    #[test]
    fn malformed_addresses_say_which_part_is_wrong() {
        for (text, expected) in [
            ("mirror.example", HOST_PORT),
            ("198.18.0.2:0", PORT),
            ("mirror.example:0", PORT),
            ("mirror.example:https", PORT),
            ("mirror.example:70000", PORT),
            ("fd00::2:443", IPV6),
            ("[fd00::zz]:443", IPV6),
            ("198.18.0:443", HOST),
            ("-bad.example:443", HOST),
            ("a b:443", HOST),
            (":443", HOST),
        ] {
            let error = text.parse::<EndpointAddress>().unwrap_err();
            assert_eq!(error.expected, expected, "{text}");
        }
    }
}
