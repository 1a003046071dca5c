//! A mirror's URL as written in `[[mirror]] url`: checked when the file is read, so a typo is
//! reported with its line rather than at the first transfer.

use std::{fmt, path::PathBuf, str::FromStr};

/// Where a mirror's objects live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MirrorUrl {
    /// `s3://BUCKET/PREFIX`: endpoint, region and credentials from the AWS environment and
    /// config files.
    S3 { bucket: String, prefix: String },
    /// `http(s)://HOST[:PORT]/PATH`: a WebDAV-style server (PUT, GET with Range, MKCOL).
    Http { url: String },
    /// `az://CONTAINER/PREFIX` (or `azure://`): Azure Blob Storage; the account and its
    /// key, SAS or connection string from the environment. Also
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`, which names the account.
    Azure {
        account: Option<String>,
        container: String,
        prefix: String,
    },
    /// `gs://BUCKET/PREFIX`: Google Cloud Storage; credentials from
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    Gcs { bucket: String, prefix: String },
    /// `file:///ABSOLUTE/PATH`: a directory, also one on a network file system.
    File { path: PathBuf },
    /// `sftp://[USER@]HOST[:PORT]/ABSOLUTE/PATH`: a directory on an SSH server, through the
    /// system's `ssh` (its keys, agent, configuration and known_hosts). What the URL leaves
    /// out (user, port) comes from ssh's configuration.
    Sftp {
        user: Option<String>,
        /// A name or an address (IPv6 without its brackets).
        host: String,
        port: Option<u16>,
        /// Absolute, without a trailing `/`.
        path: String,
    },
}

/// Why a text is not a mirror URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a mirror URL: expected {expected}")]
pub struct UrlError {
    pub text: String,
    pub expected: &'static str,
}

pub(crate) const FORMS: &str = "\"s3://BUCKET/PREFIX\", \"az://CONTAINER/PREFIX\", \
                                \"gs://BUCKET/PREFIX\", \"https://HOST/PATH\" (WebDAV), \
                                \"sftp://USER@HOST/ABSOLUTE/PATH\" or \"file:///ABSOLUTE/PATH\"";
const BUCKET: &str = "an S3 bucket name after s3:// (3 to 63 lowercase letters, digits, `.` \
                      and `-`), like \"s3://build-cache/netwatch\"";
const CONTAINER: &str = "an Azure container name after az:// (3 to 63 lowercase letters, \
                         digits and single `-`, starting and ending with a letter or digit), \
                         like \"az://build-cache/netwatch\"";
/// Azure's public blob endpoints: a URL there is an Azure mirror, not a WebDAV one.
const AZURE_HOST: &str = ".blob.core.windows.net";
const AZURE_HTTPS: &str = "an Azure storage account (3 to 24 lowercase letters and digits) \
                           and a container after https://, like \
                           \"https://account.blob.core.windows.net/build-cache/netwatch\"";
const GCS_BUCKET: &str = "a Google Cloud Storage bucket name after gs:// (3 to 63 lowercase \
                          letters, digits, `-`, `_` and `.`, starting and ending with a letter \
                          or digit), like \"gs://build-cache/netwatch\"";
const HOST: &str = "a host after http:// or https://, like \"https://cache.example/dav\"";
const NO_EXTRAS: &str = "a URL without user:password@, `?query` or `#fragment`: credentials \
                         come from the environment, never from the file";
const NO_SPACES: &str = "a URL without spaces or control characters, like \"s3://BUCKET/PREFIX\", \
                         \"https://HOST/PATH\" (WebDAV) or \"file:///ABSOLUTE/PATH\"";
const SFTP: &str = "a host and an absolute path after sftp://, like \
                    \"sftp://build@cache.example:2222/srv/mirror\" (user and port are optional: \
                    ssh's configuration gives them)";
const FILE: &str = "an absolute path after file://, like \"file:///srv/mirror\" (three slashes)";
const SEGMENTS: &str = "path segments of letters, digits, `.`, `_`, `-` and `+`, none of them \
                        `.` or `..`";

impl FromStr for MirrorUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |expected| UrlError {
            text: text.to_string(),
            expected,
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(NO_SPACES));
        }
        if text.contains(['?', '#']) {
            return Err(fail(NO_EXTRAS));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !bucket_ok {
                return Err(fail(BUCKET));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() && !safe_segments(prefix) {
                return Err(fail(SEGMENTS));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(rest) = text
            .strip_prefix("az://")
            .or_else(|| text.strip_prefix("azure://"))
        {
            let (container, prefix) =
                split_bucket(rest, container_ok).ok_or_else(|| fail(CONTAINER))?;
            let prefix = checked_prefix(prefix).ok_or_else(|| fail(SEGMENTS))?;
            return Ok(Self::Azure {
                account: None,
                container,
                prefix,
            });
        }
        if let Some(rest) = text.strip_prefix("gs://") {
            let (bucket, prefix) =
                split_bucket(rest, gcs_bucket_ok).ok_or_else(|| fail(GCS_BUCKET))?;
            let prefix = checked_prefix(prefix).ok_or_else(|| fail(SEGMENTS))?;
            return Ok(Self::Gcs { bucket, prefix });
        }
        if let Some(rest) = text.strip_prefix("https://") {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.to_ascii_lowercase().ends_with(AZURE_HOST) {
                let account = &host[..host.len() - AZURE_HOST.len()];
                let account_ok = (3..=24).contains(&account.len())
                    && account
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                let (container, prefix) = split_bucket(path, container_ok)
                    .filter(|_| account_ok)
                    .ok_or_else(|| fail(AZURE_HTTPS))?;
                let prefix = checked_prefix(prefix).ok_or_else(|| fail(SEGMENTS))?;
                return Ok(Self::Azure {
                    account: Some(account.to_string()),
                    container,
                    prefix,
                });
            }
        }
        if let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.contains('@') {
                return Err(fail(NO_EXTRAS));
            }
            let (host, port) = match authority.strip_prefix('[') {
                Some(v6) => match v6.split_once(']') {
                    Some((host, port)) => (host, port),
                    None => return Err(fail(HOST)),
                },
                None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
            };
            let port_ok = match port.strip_prefix(':') {
                Some(port) => port.parse::<u16>().is_ok_and(|p| p != 0),
                None => port.is_empty(),
            };
            if !port_ok {
                return Err(fail(HOST));
            }
            if host.is_empty() {
                return Err(fail(HOST));
            }
            let path = path.trim_end_matches('/');
            if !path.is_empty() && !safe_segments(path) {
                return Err(fail(SEGMENTS));
            }
            return Ok(Self::Http {
                url: text.trim_end_matches('/').to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("sftp://") {
            return sftp(rest)
                .ok_or_else(|| fail(SFTP))
                .and_then(|url| match url {
                    Self::Sftp { ref path, .. } if !safe_segments(&path[1..]) => {
                        Err(fail(SEGMENTS))
                    }
                    url => Ok(url),
                });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(fail(FILE));
            }
            if path.split('/').any(|s| s == "." || s == "..") {
                return Err(fail(SEGMENTS));
            }
            return Ok(Self::File {
                path: PathBuf::from(path),
            });
        }
        Err(fail(FORMS))
    }
}

/// `[USER@]HOST[:PORT]/PATH` as an SFTP mirror, its path not yet checked. A user or host
/// that ssh could read as an option (a leading `-`) is refused, as is `user:password@`.
fn sftp(rest: &str) -> Option<MirrorUrl> {
    let (authority, path) = rest.split_at(rest.find('/')?);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, authority),
    };
    let name_ok = |name: &str, extra: &[u8]| {
        !name.is_empty()
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
    };
    if user.is_some_and(|user| !name_ok(user, b"")) {
        return None;
    }
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, port) = v6.split_once(']')?;
            (host.parse::<std::net::Ipv6Addr>().ok()?.to_string(), port)
        }
        None => {
            let (host, port) = host_port.split_at(host_port.find(':').unwrap_or(host_port.len()));
            name_ok(host, b"").then_some(())?;
            (host.to_string(), port)
        }
    };
    let port = match port.strip_prefix(':') {
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None if port.is_empty() => None,
        None => return None,
    };
    let path = path.trim_end_matches('/');
    (path.len() > 1).then_some(())?;
    Some(MirrorUrl::Sftp {
        user: user.map(str::to_string),
        host,
        port,
        path: path.to_string(),
    })
}

/// The bucket (or container) before the first `/`, if `valid` takes it, and the rest.
fn split_bucket(rest: &str, valid: fn(&str) -> bool) -> Option<(String, &str)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    valid(bucket).then(|| (bucket.to_string(), prefix))
}

/// A prefix without its trailing `/`, if its segments are safe.
fn checked_prefix(prefix: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    (prefix.is_empty() || safe_segments(prefix)).then(|| prefix.to_string())
}

/// Azure's rule for container names.
fn container_ok(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Google's rule for bucket names (without dots' extra rules for domain-named buckets).
fn gcs_bucket_ok(name: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && edge(name.bytes().next())
        && edge(name.bytes().last())
}

/// Segments a store path may have: those of an artifact key.
fn safe_segments(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    })
}

impl fmt::Display for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Http { url } => f.write_str(url),
            Self::Azure {
                account,
                container,
                prefix,
            } => {
                match account {
                    Some(account) => write!(f, "https://{account}{AZURE_HOST}/{container}")?,
                    None => write!(f, "az://{container}")?,
                }
                match prefix.as_str() {
                    "" => Ok(()),
                    prefix => write!(f, "/{prefix}"),
                }
            }
            Self::Gcs { bucket, prefix } if prefix.is_empty() => write!(f, "gs://{bucket}"),
            Self::Gcs { bucket, prefix } => write!(f, "gs://{bucket}/{prefix}"),
            Self::File { path } => write!(f, "file://{}", path.display()),
            Self::Sftp {
                user,
                host,
                port,
                path,
            } => {
                f.write_str("sftp://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                match host.contains(':') {
                    true => write!(f, "[{host}]")?,
                    false => f.write_str(host)?,
                }
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                f.write_str(path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_parses() {
        assert_eq!(
            "s3://build-cache/netwatch/ci".parse(),
            Ok(MirrorUrl::S3 {
                bucket: "build-cache".into(),
                prefix: "netwatch/ci".into()
            })
        );
        assert_eq!(
            "https://cache.example:8443/dav/".parse(),
            Ok(MirrorUrl::Http {
                url: "https://cache.example:8443/dav".into()
            })
        );
        assert_eq!(
            "file:///srv/mirror".parse(),
            Ok(MirrorUrl::File {
                path: "/srv/mirror".into()
            })
        );
        assert_eq!(
            "azure://build-cache/ci/".parse(),
            Ok(MirrorUrl::Azure {
                account: None,
                container: "build-cache".into(),
                prefix: "ci".into()
            })
        );
        assert_eq!(
            "https://acct01.blob.core.windows.net/build-cache/ci".parse(),
            Ok(MirrorUrl::Azure {
                account: Some("acct01".into()),
                container: "build-cache".into(),
                prefix: "ci".into()
            })
        );
        assert_eq!(
            "gs://build_cache.x/ci".parse(),
            Ok(MirrorUrl::Gcs {
                bucket: "build_cache.x".into(),
                prefix: "ci".into()
            })
        );
        assert_eq!(
            "sftp://build@cache.example:2222/srv/mirror/".parse(),
            Ok(MirrorUrl::Sftp {
                user: Some("build".into()),
                host: "cache.example".into(),
                port: Some(2222),
                path: "/srv/mirror".into()
            })
        );
        for text in [
            "s3://bucket",
            "http://127.0.0.1:8080",
            "http://[::1]:80/x",
            "az://cache/a/b",
            "https://acct01.blob.core.windows.net/cache/a",
            "gs://cache",
            "sftp://build@cache.example:2222/srv/mirror",
            "sftp://[::1]/srv/m",
            "sftp://10.0.0.1/srv/m",
        ] {
            let url: MirrorUrl = text.parse().unwrap();
            assert_eq!(url.to_string(), text);
        }
    }

    #[test]
    fn malformed_urls_say_what_was_expected() {
        for (text, expected) in [
            ("ftp://mirror.example/x", FORMS),
            ("mirror.example", FORMS),
            ("s3://", BUCKET),
            ("s3://Bucket_Name/x", BUCKET),
            ("s3://bucket/../x", SEGMENTS),
            ("https:///path", HOST),
            ("https://host:0/", HOST),
            ("https://user:secret@host/", NO_EXTRAS),
            ("https://host/x?token=1", NO_EXTRAS),
            ("not a url", NO_SPACES),
            ("file://relative/path", FILE),
            ("file:///srv/../etc", SEGMENTS),
            ("az://Cache/x", CONTAINER),
            ("az://a--b", CONTAINER),
            ("az://ca", CONTAINER),
            ("az://cache/../x", SEGMENTS),
            ("https://Acct_1.blob.core.windows.net/cache", AZURE_HTTPS),
            ("https://acct.blob.core.windows.net/C", AZURE_HTTPS),
            ("https://acct.blob.core.windows.net", AZURE_HTTPS),
            ("gs://-cache", GCS_BUCKET),
            ("gs://Cache", GCS_BUCKET),
            ("gs://cache/x//y", SEGMENTS),
            ("sftp://host", SFTP),
            ("sftp://host/", SFTP),
            ("sftp://-oProxyCommand=x/srv", SFTP),
            ("sftp://-l@host/srv", SFTP),
            ("sftp://user:secret@host/srv", SFTP),
            ("sftp://host:0/srv", SFTP),
            ("sftp://host/srv/../etc", SEGMENTS),
        ] {
            let error = text.parse::<MirrorUrl>().unwrap_err();
            assert_eq!(error.expected, expected, "{text}");
        }
    }
}
