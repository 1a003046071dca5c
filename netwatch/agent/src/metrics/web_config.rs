//! The exporter's web configuration file, in the format every Prometheus exporter reads
//! (exporter-toolkit's `--web.config.file`): TLS and basic-auth users. Read once, as root, at
//! start; keys netwatch does not implement are refused by name rather than ignored, so a
//! setting an operator relies on is never silently off.

use std::{
    collections::BTreeMap,
    fs,
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use yaml_rust2::{Yaml, YamlLoader};

use super::tls;

/// A web configuration file, its certificates read and its TLS set up.
#[derive(Debug)]
pub struct WebConfig {
    /// The file it came from, for messages.
    pub source: PathBuf,
    /// `tls_server_config`; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether TLS requires a client certificate signed by `client_ca_file`.
    pub client_certificates: bool,
    /// `basic_auth_users`: user name to bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, String>,
}

/// Two configurations are the same when they come from the same file.
impl PartialEq for WebConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a web configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "[metrics] listen = {addr} is not a loopback address, and the web config {} does \
         not {missing}: off loopback, the agent serves metrics only over TLS and to \
         scrapers that authenticate (basic_auth_users, or client_auth_type = \
         RequireAndVerifyClientCert); see docs/config.md",
        path.display()
    )]
    Exposed {
        addr: SocketAddr,
        path: PathBuf,
        missing: &'static str,
    },
}

/// The largest file read: a web configuration, a certificate chain or a key is a few KiB.
pub(super) const MAX_FILE: u64 = 1 << 20;

const TOP_KEYS: &[&str] = &["tls_server_config", "basic_auth_users"];
/// exporter-toolkit keys netwatch leaves out, named so the refusal can say so.
const UNSUPPORTED: &[&str] = &["http_server_config", "rate_limit"];

impl WebConfig {
    /// Reads and checks `path` (an absolute path from root's own configuration).
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let text = read_bounded(path).map_err(invalid)?;
        let docs =
            YamlLoader::load_from_str(&text).map_err(|e| invalid(format!("not YAML: {e}")))?;
        let top = match docs.as_slice() {
            [] => {
                return Err(invalid(
                    "empty: expected tls_server_config and basic_auth_users".into(),
                ))
            }
            [doc] => doc,
            _ => return Err(invalid("expected one YAML document, found several".into())),
        };
        let top = mapping(top, "the file").map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("/"));
        let mut config = WebConfig {
            source: path.to_owned(),
            tls: None,
            client_certificates: false,
            users: BTreeMap::new(),
        };
        for (key, value) in top {
            match key.as_str() {
                "tls_server_config" => {
                    let settings = tls::Settings::parse(value, base).map_err(invalid)?;
                    config.client_certificates = settings.client_ca.is_some();
                    config.tls = Some(settings.server_config().map_err(invalid)?);
                }
                "basic_auth_users" => config.users = users(value).map_err(invalid)?,
                other => return Err(invalid(unknown_key(other, "", TOP_KEYS, UNSUPPORTED))),
            }
        }
        Ok(config)
    }

    /// Refuses a configuration that would expose the metrics off loopback without TLS, or
    /// to anyone who can reach the port.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<(), WebConfigError> {
        if addr.ip().is_loopback() {
            return Ok(());
        }
        let missing = if self.tls.is_none() {
            "set tls_server_config"
        } else if self.users.is_empty() && !self.client_certificates {
            "authenticate scrapers"
        } else {
            return Ok(());
        };
        Err(WebConfigError::Exposed {
            addr,
            path: self.source.clone(),
            missing,
        })
    }
}

/// Reads a regular file of at most [`MAX_FILE`] bytes as UTF-8; the error says which and
/// why. Opened without blocking and checked before reading: a FIFO or a device named by
/// mistake must not hang the agent's start or feed it without end.
pub(super) fn read_bounded(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(format!(
            "{} is not a regular file: name the file itself",
            path.display()
        ));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    Ok(text)
}

/// A YAML mapping with string keys, in file order.
pub(super) fn mapping<'a>(yaml: &'a Yaml, what: &str) -> Result<Vec<(String, &'a Yaml)>, String> {
    let Yaml::Hash(hash) = yaml else {
        return Err(format!("{what}: expected a mapping of keys to values"));
    };
    hash.iter()
        .map(|(key, value)| match key {
            Yaml::String(key) => Ok((key.clone(), value)),
            other => Err(format!("{what}: expected text keys, found {other:?}")),
        })
        .collect()
}

/// The message for a key netwatch does not read.
pub(super) fn unknown_key(
    key: &str,
    section: &str,
    known: &[&str],
    unsupported: &[&str],
) -> String {
    let place = if section.is_empty() {
        String::new()
    } else {
        format!(" in {section}")
    };
    if unsupported.contains(&key) {
        format!("`{key}`{place} is not supported by netwatch: remove it")
    } else {
        format!(
            "unknown key `{key}`{place}: expected one of {}",
            known.join(", ")
        )
    }
}

fn users(yaml: &Yaml) -> Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    for (user, hash) in mapping(yaml, "basic_auth_users")? {
        let Yaml::String(hash) = hash else {
            return Err(format!("basic_auth_users: {user}: expected a bcrypt hash"));
        };
        if user.contains(':') {
            return Err(format!(
                "basic_auth_users: `{user}`: a user name cannot contain `:` (basic auth \
                 separates the name from the password with it)"
            ));
        }
        // The password itself, rather than its hash, is the mistake this catches.
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!(
                "basic_auth_users: {user}: expected a bcrypt hash like `$2y$10$...` \
                 (`htpasswd -nBC 10 {user}` makes one), not a password"
            ));
        }
        users.insert(user, hash.clone());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        fs::write(&path, yaml).unwrap();
        WebConfig::load(&path).map_err(|e| e.to_string())
    }

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW";

    #[test]
    fn users_are_read_and_keys_netwatch_lacks_are_refused_by_name() {
        let config = load(&format!("basic_auth_users:\n  prometheus: {HASH}\n")).unwrap();
        assert_eq!(config.users["prometheus"], HASH);
        let error = load("http_server_config:\n  headers: {}\n").unwrap_err();
        assert!(
            error.ends_with("`http_server_config` is not supported by netwatch: remove it"),
            "{error}"
        );
        let error = load("basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(error.contains("unknown key `basic_auth_user`: expected one of tls_server_config, basic_auth_users"), "{error}");
        let error =
            load("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n")
                .unwrap_err();
        assert!(
            error.contains("`cipher_suites` in tls_server_config is not supported"),
            "{error}"
        );
    }

    #[test]
    fn a_password_where_a_hash_belongs_is_refused() {
        let error = load("basic_auth_users:\n  prometheus: hunter2\n").unwrap_err();
        assert!(
            error.contains("prometheus: expected a bcrypt hash like `$2y$10$...`"),
            "{error}"
        );
    }

    #[test]
    fn tls_files_that_cannot_be_read_are_named() {
        let error =
            load("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n").unwrap_err();
        assert!(
            error.contains("cannot read ") && error.contains("nope.crt"),
            "{error}"
        );
        let error = load("tls_server_config:\n  cert_file: a\n").unwrap_err();
        assert!(
            error.contains("expected both cert_file and key_file"),
            "{error}"
        );
        let error = load("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n").unwrap_err();
        assert!(
            error.contains("expected NoClientCert or RequireAndVerifyClientCert"),
            "{error}"
        );
        let error = load("not: [valid").unwrap_err();
        assert!(error.contains("web.yml: not YAML"), "{error}");
        let error =
            load("tls_server_config:\n  cert_file: /dev/zero\n  key_file: b\n").unwrap_err();
        assert!(error.contains("/dev/zero is not a regular file"), "{error}");
        // A FIFO with no writer: refused at once, not waited on.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("web.yml");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = WebConfig::load(&fifo).unwrap_err().to_string();
        assert!(error.contains("is not a regular file"), "{error}");
    }

    #[test]
    fn off_loopback_the_exporter_needs_tls_and_authentication() {
        let config = WebConfig {
            source: "/etc/netwatch/web.yml".into(),
            tls: None,
            client_certificates: false,
            users: BTreeMap::from([("p".to_owned(), HASH.to_owned())]),
        };
        assert!(config
            .check_exposure("127.0.0.1:9477".parse().unwrap())
            .is_ok());
        let error = config
            .check_exposure("0.0.0.0:9477".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("listen = 0.0.0.0:9477 is not a loopback address, and the web config /etc/netwatch/web.yml does not set tls_server_config"), "{error}");
    }
}
