//! Metrics for a fleet: the agent serves them off loopback only behind its web configuration
//! (TLS and basic auth, in the format Prometheus exporters read), and a real Prometheus
//! scrapes two agents in two namespaces with the settings its documentation gives, and gives
//! their verdicts back, while one with a wrong password, curl without one, and plain HTTP get
//! nothing.
//!
//! The certificate is made by openssl and the password's hash by libxcrypt (perl's crypt),
//! not by the code that checks them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netwatch_tests::agent::{binary, write_config, Agent, Launch};
use netwatch_tests::metrics::prometheus;
use netwatch_tests::netns::NetNs;
use netwatch_tests::require_privileges;
use netwatch_tests::topology::Pair;

const PORT: u16 = 9477;
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";
const PROMETHEUS_WEB: &str = "127.0.0.1:19090";

/// A self-signed certificate for the addresses `ips` and its key, written into `dir` by
/// openssl.
fn certificate(dir: &Path, ips: &[&str]) {
    let names: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=netwatch-test"])
        .arg("-addext")
        .arg(format!("subjectAltName={}", names.join(",")))
        .arg("-keyout")
        .arg(dir.join("netwatch.key"))
        .arg("-out")
        .arg(dir.join("netwatch.crt"))
        .output()
        .expect("running openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `password`'s bcrypt hash, by libxcrypt.
fn bcrypt(password: &str) -> String {
    let out = Command::new("perl")
        .args([
            "-e",
            "print crypt($ARGV[0], '$2b$10$' . 'netwatchtestsaltsaltsa')",
            password,
        ])
        .output()
        .expect("running perl");
    let hash = String::from_utf8(out.stdout).expect("a UTF-8 hash");
    assert!(
        hash.starts_with("$2b$10$") && hash.len() == 60,
        "libxcrypt made {hash:?}"
    );
    hash
}

/// `curl` in `ns` against the agent's metrics: (HTTP status, body); status 0 when there was
/// no HTTP answer at all.
fn curl(ns: &NetNs, dir: &Path, url: &str, user: Option<&str>) -> (u16, String) {
    let ca = dir.join("netwatch.crt");
    let mut args = vec!["-sS", "--max-time", "5", "--cacert", ca.to_str().unwrap()];
    let credentials;
    if let Some(user) = user {
        credentials = user.to_owned();
        args.extend(["-u", &credentials]);
    }
    args.extend(["-w", "\n%{http_code}", url]);
    let out = ns.exec("curl", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A Prometheus server in `ns`; killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus in `ns`: job `netwatch` scrapes `targets` as the docs say, job `intruder`
/// the first of them with a wrong password.
fn start_prometheus(ns: &NetNs, dir: &Path, targets: &[&str]) -> Prometheus {
    let scrape = |job: &str, password: &str, targets: &[&str]| {
        format!(
            "  - job_name: {job}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    \
             basic_auth:\n      username: {USER}\n      password: '{password}'\n    \
             static_configs:\n      - targets: ['{}']\n",
            targets.join("', '"),
            ca = dir.join("netwatch.crt").display()
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        scrape("netwatch", PASSWORD, targets),
        scrape("intruder", "wrong horse", &targets[..1])
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).expect("writing prometheus.yml");
    let server = prometheus().unwrap_or_else(|e| panic!("{e:#}"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(server)
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS_WEB}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("a log file"))
        .spawn()
        .expect("starting prometheus");
    Prometheus(child)
}

/// Prometheus's answer to an instant query, as JSON, or `None` before it serves.
fn query(ns: &NetNs, promql: &str) -> Option<serde_json::Value> {
    let url = format!("http://{PROMETHEUS_WEB}/api/v1/query");
    let query = format!("query={promql}");
    let out = ns.exec(
        "curl",
        &["-sS", "--max-time", "2", "--data-urlencode", &query, &url],
    );
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until `promql`'s single sample is `want`; panics with the last answer after 40 s.
fn wait_for_value(ns: &NetNs, promql: &str, want: f64, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = query(ns, promql);
        let value = answer
            .as_ref()
            .and_then(|a| a["data"]["result"][0]["value"][1].as_str());
        if value.and_then(|v| v.parse::<f64>().ok()) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus says {answer:?} for {promql}, not {want}; its log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An agent in `ns` serving metrics at `addr` behind the web configuration `web`.
fn launch_agent(ns: &NetNs, addr: &str, web: &Path) -> Agent {
    let config = format!(
        "[metrics]\nlisten = \"{addr}\"\nweb_config = \"{}\"\n",
        web.display()
    );
    let agent = Agent::launch(
        ns,
        &Launch {
            config: Some(&config),
            ..Launch::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let serving = agent.wait_for("serving metrics", |_| true, Duration::from_secs(30));
    assert_eq!(serving["tls"], true, "{serving}");
    assert_eq!(serving["basic_auth"], true, "{serving}");
    agent
}

#[test]
fn a_fleet_prometheus_scrapes_over_tls_with_basic_auth_and_nobody_else_does() {
    require_privileges();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a_ip, b_ip) = (pair.a_v4.to_string(), pair.b_v4.to_string());
    certificate(dir.path(), &[&a_ip, &b_ip]);
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: netwatch.crt\n  key_file: netwatch.key\n\
             basic_auth_users:\n  {USER}: {}\n",
            bcrypt(PASSWORD)
        ),
    )
    .expect("writing web.yml");
    let (a_target, b_target) = (format!("{a_ip}:{PORT}"), format!("{b_ip}:{PORT}"));
    let agent_b = launch_agent(&pair.b, &b_target, &web);
    let agent_a = launch_agent(&pair.a, &a_target, &web);

    let url = format!("https://{b_target}/metrics");
    let (code, body) = curl(
        &pair.a,
        dir.path(),
        &url,
        Some(&format!("{USER}:{PASSWORD}")),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("netwatch_host_verdict"), "{body}");
    let (code, _) = curl(&pair.a, dir.path(), &url, None);
    assert_eq!(code, 401, "no password");
    let (code, _) = curl(&pair.a, dir.path(), &url, Some(&format!("{USER}:wrong")));
    assert_eq!(code, 401, "a wrong password");
    let (code, body) = curl(
        &pair.a,
        dir.path(),
        &format!("http://{b_target}/metrics"),
        None,
    );
    assert_eq!(code, 0, "plain HTTP got an HTTP answer: {body}");

    // Prometheus's own web API, which the test queries, listens on A's loopback.
    pair.a.exec_ok("ip", &["link", "set", "lo", "up"]);
    let _prometheus = start_prometheus(&pair.a, dir.path(), &[&b_target, &a_target]);
    wait_for_value(&pair.a, "count(up{job=\"netwatch\"} == 1)", 2.0, dir.path());
    // Each host's verdict read back: one current verdict (the series at 1) per agent.
    wait_for_value(
        &pair.a,
        "count(count by (instance) (netwatch_host_verdict{job=\"netwatch\"} == 1))",
        2.0,
        dir.path(),
    );
    wait_for_value(&pair.a, "up{job=\"intruder\"}", 0.0, dir.path());
    drop((agent_a, agent_b));
}

#[test]
fn the_agent_refuses_to_serve_off_loopback_without_tls() {
    require_privileges();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  {USER}: {}\n", bcrypt(PASSWORD)),
    )
    .expect("writing web.yml");
    let config = format!(
        "[metrics]\nlisten = \"{}:{PORT}\"\nweb_config = \"{}\"\n",
        pair.b_v4,
        web.display()
    );
    let file = write_config(&config);
    let out = Command::new(binary())
        .args(["agent", "--netns", pair.b.name(), "--config"])
        .arg(file.path())
        .stdin(Stdio::null())
        .output()
        .expect("running the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    for wanted in [
        "is not a loopback address",
        web.to_str().unwrap(),
        "does not set tls_server_config",
    ] {
        assert!(stderr.contains(wanted), "no `{wanted}` in: {stderr}");
    }
}
