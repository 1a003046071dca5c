//! A real Azure Blob Storage API server for the transfer tests: Azurite (Microsoft's
//! emulator, from npm), on loopback, its data in memory, with a container made by a request
//! signed with the emulator's well-known account key (Shared Key, as Azure documents it).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{free_loopback_addr, in_namespace};
use crate::netns::NetNs;

/// The variable `cargo xtask test` sets to the `azurite-blob` it installed.
pub const NETWATCH_AZURITE: &str = "NETWATCH_AZURITE";
/// The container every instance creates.
pub const CONTAINER: &str = "netwatch-test";
/// Azurite's development account and key, documented by Microsoft.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const VERSION: &str = "2021-08-06";

pub struct Azurite {
    addr: SocketAddr,
    child: Child,
    state: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite on a free loopback port of this namespace.
    pub fn start() -> Self {
        Self::start_at(None, free_loopback_addr())
    }

    /// Starts Azurite in `ns` (`None`: this process's namespace) listening on `addr`, and
    /// creates the container.
    pub fn start_at(ns: Option<&NetNs>, addr: SocketAddr) -> Self {
        let binary = binary();
        let state = tempfile::tempdir().expect("a directory for Azurite");
        let log = std::fs::File::create(state.path().join("log")).expect("a log file");
        let mut command = super::command_in(ns, &binary);
        let child = command
            .args(["--blobHost", &addr.ip().to_string()])
            .args(["--blobPort", &addr.port().to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut server = Azurite { addr, child, state };
        let started = Instant::now();
        let listening = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        while !in_namespace(ns, listening) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("Azurite exited at start ({status}): {}", server.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "Azurite did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        in_namespace(ns, || server.create_container());
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `az://CONTAINER/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{CONTAINER}/{prefix}")
    }

    /// What a client needs in its environment: the connection string the portal would give.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!(
                "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://{}/{ACCOUNT};",
                self.addr
            ),
        )]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("log")).unwrap_or_default()
    }

    /// The URL of blob `name` in the container, and the headers that sign a plain client's
    /// `method` of it (PUT: a block blob of `length` bytes, as application/octet-stream):
    /// what `curl` needs to move the same bytes as netwatch, for the bench.
    pub fn signed_blob_request(
        &self,
        method: &str,
        name: &str,
        length: Option<u64>,
    ) -> (String, Vec<String>) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let path = format!("/{ACCOUNT}/{CONTAINER}/{name}");
        let (length, content_type, blob_type) = match length {
            Some(length) => (
                length.to_string(),
                "application/octet-stream",
                "x-ms-blob-type:BlockBlob\n",
            ),
            None => (String::new(), "", ""),
        };
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\n{blob_type}x-ms-date:{date}\nx-ms-version:{VERSION}\n/{ACCOUNT}{path}"
        );
        let mut headers = vec![
            format!("x-ms-date: {date}"),
            format!("x-ms-version: {VERSION}"),
            format!("Authorization: SharedKey {ACCOUNT}:{}", sign(&to_sign)),
        ];
        if !blob_type.is_empty() {
            headers.push("x-ms-blob-type: BlockBlob".to_string());
            headers.push(format!("Content-Type: {content_type}"));
        }
        (format!("http://{}{path}", self.addr), headers)
    }

    /// `PUT /ACCOUNT/CONTAINER?restype=container`, signed with Shared Key.
    fn create_container(&self) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let path = format!("/{ACCOUNT}/{CONTAINER}");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{ACCOUNT}{path}\nrestype:container"
        );
        let signature = sign(&to_sign);
        let request = format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: {}\r\nx-ms-date: {date}\r\nx-ms-version: {VERSION}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut stream = TcpStream::connect(self.addr).expect("connect to Azurite");
        stream
            .write_all(request.as_bytes())
            .expect("send to Azurite");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 201"),
            "Azurite did not create the container: {reply}\n{}",
            self.log()
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Shared Key signature of `to_sign` with the development account's key.
fn sign(to_sign: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .expect("the key is base64");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()))
}

/// HMAC-SHA-256 (RFC 2104), for the signatures the helper makes.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `$NETWATCH_AZURITE`, else where `cargo xtask test` installs it.
pub fn binary() -> PathBuf {
    let path = super::tool_path(
        NETWATCH_AZURITE,
        "target/test-tools/azurite/node_modules/.bin/azurite-blob",
    );
    assert!(
        path.is_file(),
        "Azurite is not at {}: `cargo xtask test` installs it (npm), or set {NETWATCH_AZURITE}",
        path.display()
    );
    path
}
