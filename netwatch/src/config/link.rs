//! Which `[[endpoint]]` a mirror's health comes from when its table does not say: the one
//! whose address is the host and port of the mirror's `http(s)://` or `sftp://` URL.

use std::net::IpAddr;

use super::{EndpointAddress, EndpointConfig};
use netwatch_transfer::MirrorUrl;

/// The name of the first endpoint (in file order) at the URL's host and port (80 for
/// http, 443 for https, 22 for sftp when the URL has none: an sftp port set only in ssh's
/// configuration is not seen). An S3 mirror's host comes from the environment and a file
/// mirror has none, so those are linked only by `endpoint = "NAME"`.
pub(super) fn endpoint_for(url: &MirrorUrl, endpoints: &[EndpointConfig]) -> Option<String> {
    let (host, port) = match url {
        MirrorUrl::Http { url } => host_and_port(url)?,
        MirrorUrl::Sftp { host, port, .. } => (host.as_str(), port.unwrap_or(22)),
        _ => return None,
    };
    endpoints
        .iter()
        .find(|e| match &e.address {
            EndpointAddress::Ip(addr) => {
                addr.port() == port && host.parse::<IpAddr>().ok() == Some(addr.ip())
            }
            EndpointAddress::Host {
                host: name,
                port: p,
            } => {
                *p == port
                    && name
                        .trim_end_matches('.')
                        .eq_ignore_ascii_case(host.trim_end_matches('.'))
            }
        })
        .map(|e| e.name.clone())
}

/// The host (IPv6 without brackets) and port of a URL `MirrorUrl` accepted.
fn host_and_port(url: &str) -> Option<(&str, u16)> {
    let (rest, default_port) = match url.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (url.strip_prefix("http://")?, 80),
    };
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn endpoint(name: &str, address: &str) -> EndpointConfig {
        EndpointConfig {
            name: name.into(),
            address: address.parse().unwrap(),
            probe: false,
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
        }
    }

    fn linked(url: &str, endpoints: &[EndpointConfig]) -> Option<String> {
        endpoint_for(&url.parse().unwrap(), endpoints)
    }

    #[test]
    fn a_mirror_is_linked_to_the_endpoint_at_its_host_and_port() {
        let endpoints = [
            endpoint("web", "cache.example:80"),
            endpoint("tls", "Cache.Example.:443"),
            endpoint("v4", "198.18.0.2:8080"),
            endpoint("v6", "[fd00::2]:443"),
            endpoint("ssh", "198.18.0.9:22"),
            endpoint("ssh-high", "[fd00::9]:2222"),
        ];
        assert_eq!(
            linked("http://cache.example/dav", &endpoints).as_deref(),
            Some("web")
        );
        assert_eq!(
            linked("https://cache.example", &endpoints).as_deref(),
            Some("tls")
        );
        assert_eq!(
            linked("http://198.18.0.2:8080/x", &endpoints).as_deref(),
            Some("v4")
        );
        assert_eq!(
            linked("https://[fd00:0::2]/x", &endpoints).as_deref(),
            Some("v6")
        );
        assert_eq!(
            linked("sftp://build@198.18.0.9/srv/mirror", &endpoints).as_deref(),
            Some("ssh")
        );
        assert_eq!(
            linked("sftp://[fd00::9]:2222/srv/mirror", &endpoints).as_deref(),
            Some("ssh-high")
        );
        // Another port, another host, or no host in the URL: no link.
        assert_eq!(linked("http://cache.example:8080", &endpoints), None);
        assert_eq!(linked("http://198.18.0.3:8080", &endpoints), None);
        assert_eq!(linked("s3://bucket/prefix", &endpoints), None);
        assert_eq!(linked("file:///srv/mirror", &endpoints), None);
    }
}
