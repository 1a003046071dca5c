//! A real WebDAV-style HTTP mirror: Debian's nginx with PUT, DELETE, MKCOL (and PROPFIND from
//! the dav-ext module, so a mirror can be listed), serving a directory of the test's, optionally
//! capped per connection with `limit_rate`. Started in a namespace the test made, or on
//! loopback; stopped on drop.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// Where Debian installs the binary and the dav-ext module (`cargo xtask test` installs both).
const NGINX: &str = "/usr/sbin/nginx";
const DAV_EXT: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
/// How long nginx may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Every request nginx answers, one line each, unbuffered: what a client really asked for.
const ACCESS_LOG: &str = "access.log";

/// How long a fast shutdown may take before the master is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One nginx process serving `root` at `addr`.
pub struct Nginx {
    addr: SocketAddr,
    root: PathBuf,
    child: Child,
    // Its configuration, logs and temporary files: removed with it.
    state: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in `ns` (`None`: this process's namespace, for a loopback address) on
    /// `addr`, serving and accepting uploads under `root`. `limit_rate` caps each connection's
    /// responses at that many bytes a second.
    pub fn start(
        ns: Option<&NetNs>,
        addr: SocketAddr,
        root: &Path,
        limit_rate: Option<u64>,
    ) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: `cargo xtask test` installs nginx (or: apt-get install nginx \
             libnginx-mod-http-dav-ext)"
        );
        std::fs::create_dir_all(root)
            .unwrap_or_else(|e| panic!("creating the mirror root {}: {e}", root.display()));
        let state = tempfile::tempdir().expect("a directory for nginx's own files");
        let conf = state.path().join("nginx.conf");
        std::fs::write(&conf, config(addr, root, state.path(), limit_rate))
            .expect("write nginx.conf");
        let conf = conf
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_string();
        let args = ["-e", "stderr", "-c", conf.as_str(), "-g", "daemon off;"];
        let mut command = match ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns.name(), NGINX]).args(args);
                command
            }
            None => {
                let mut command = Command::new(NGINX);
                command.args(args);
                command
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {NGINX}: {e}"));
        let mut nginx = Nginx {
            addr,
            root: root.to_path_buf(),
            child,
            state,
        };
        nginx.wait_listening(ns);
        nginx
    }

    /// `http://ADDR/`, the URL of the mirror's root.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory it serves: the mirror's objects, for a test to inspect or damage.
    /// Requests answered so far, each as "METHOD URI STATUS" (its access log).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.path().join(ACCESS_LOG))
            .map(|log| log.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn wait_listening(&mut self, ns: Option<&NetNs>) {
        let started = Instant::now();
        let addr = self.addr;
        let connects = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on nginx") {
                panic!("nginx on {addr} exited at start: {status} (its errors are above)");
            }
            let up = match ns {
                Some(ns) => ns.run(connects),
                None => connects(),
            };
            if up {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "nginx did not listen on {addr} within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops its worker too (SIGKILL would
        // orphan the worker). SIGQUIT would wait for slow clients.
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(addr: SocketAddr, root: &Path, state: &Path, limit_rate: Option<u64>) -> String {
    let state = state.display();
    let root = root.display();
    let dav_ext = if Path::new(DAV_EXT).exists() {
        format!("load_module {DAV_EXT};")
    } else {
        String::new()
    };
    let propfind = if dav_ext.is_empty() {
        ""
    } else {
        "dav_ext_methods PROPFIND OPTIONS;"
    };
    let limit = limit_rate.map_or(String::new(), |rate| format!("limit_rate {rate};"));
    format!(
        "{dav_ext}
user root root;
worker_processes 1;
pid {state}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 512; }}
http {{
    log_format requests '$request_method $uri $status';
    access_log {state}/{ACCESS_LOG} requests;
    # put asks for chunks that are not there yet: a 404 is an answer, not an error.
    log_not_found off;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    client_max_body_size 0;
    sendfile on;
    tcp_nodelay on;
    default_type application/octet-stream;
    server {{
        listen {addr};
        root {root};
        dav_methods PUT DELETE MKCOL COPY MOVE;
        {propfind}
        create_full_put_path on;
        dav_access user:rw group:r all:r;
        {limit}
    }}
}}
"
    )
}
