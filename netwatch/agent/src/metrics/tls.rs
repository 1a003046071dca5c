//! `tls_server_config` of the web configuration: the exporter's certificate and key, and
//! optionally the CA whose client certificates it requires, as rustls on ring.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use yaml_rust2::Yaml;

use super::web_config::{mapping, read_bounded, unknown_key};

const KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
];
/// exporter-toolkit keys netwatch leaves out (rustls chooses its own safe suites and curves).
const UNSUPPORTED: &[&str] = &[
    "cert",
    "key",
    "client_allowed_sans",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
];

/// What `tls_server_config` says.
#[derive(Debug)]
pub struct Settings {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// `client_auth_type: RequireAndVerifyClientCert` with this CA.
    pub client_ca: Option<PathBuf>,
    tls13_only: bool,
}

impl Settings {
    /// Reads the section; relative paths are against the web config's directory, as
    /// exporter-toolkit resolves them.
    pub fn parse(yaml: &Yaml, base: &Path) -> Result<Self, String> {
        let (mut cert_file, mut key_file, mut client_ca, mut auth_type) = (None, None, None, None);
        let mut tls13_only = false;
        for (key, value) in mapping(yaml, "tls_server_config")? {
            let text = || match value {
                Yaml::String(text) => Ok(text.as_str()),
                _ => Err(format!("tls_server_config: {key}: expected text")),
            };
            match key.as_str() {
                "cert_file" => cert_file = Some(base.join(text()?)),
                "key_file" => key_file = Some(base.join(text()?)),
                "client_ca_file" => client_ca = Some(base.join(text()?)),
                "client_auth_type" => auth_type = Some(text()?.to_owned()),
                "min_version" => {
                    tls13_only = match text()? {
                        "TLS12" => false,
                        "TLS13" => true,
                        other => {
                            return Err(format!(
                                "tls_server_config: min_version: {other}: expected TLS12 or \
                                 TLS13 (rustls speaks nothing older)"
                            ))
                        }
                    }
                }
                other => {
                    return Err(unknown_key(other, "tls_server_config", KEYS, UNSUPPORTED));
                }
            }
        }
        let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
            return Err("tls_server_config: expected both cert_file and key_file".into());
        };
        let client_ca = match (auth_type.as_deref(), client_ca) {
            (None | Some("NoClientCert"), None) => None,
            (Some("RequireAndVerifyClientCert"), Some(ca)) => Some(ca),
            (Some("RequireAndVerifyClientCert"), None) => {
                return Err(
                    "tls_server_config: client_auth_type RequireAndVerifyClientCert needs \
                     client_ca_file"
                        .into(),
                )
            }
            (None | Some("NoClientCert"), Some(_)) => {
                return Err(
                    "tls_server_config: client_ca_file is set but client_auth_type is not \
                     RequireAndVerifyClientCert: set it, or remove client_ca_file"
                        .into(),
                )
            }
            (Some(other), _) => {
                return Err(format!(
                    "tls_server_config: client_auth_type: {other}: expected NoClientCert or \
                     RequireAndVerifyClientCert (netwatch verifies every certificate it asks for)"
                ))
            }
        };
        Ok(Self {
            cert_file,
            key_file,
            client_ca,
            tls13_only,
        })
    }

    /// Reads the files and builds the server's TLS configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_slice(read_bounded(&self.key_file)?.as_bytes())
            .map_err(|e| format!("{}: no PEM private key: {e}", self.key_file.display()))?;
        let versions: &[&SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in certificates(ca)? {
                    roots
                        .add(certificate)
                        .map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read_bounded(path)?;
    let chain = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(chain)
}
