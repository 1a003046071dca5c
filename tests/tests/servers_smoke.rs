//! The mirror servers the transfer tests rely on start and behave as those tests assume.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::{Command, Output, Stdio},
};

use netwatch_tests::servers::{fake_gcs::FakeGcs, free_loopback_addr, nginx::Nginx, sshd::Sshd};

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nginx_takes_puts_serves_ranges_and_lists() {
    let root = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(None, free_loopback_addr(), root.path(), None);
    let url = format!("{}a/b/obj", nginx.url());
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "--data-binary",
        "0123456789",
        &url,
    ]);
    assert_eq!(code, "201");
    assert_eq!(curl(&["-r", "2-4", &url]), "234");
    let listing = curl(&[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &format!("{}a/b/", nginx.url()),
    ]);
    assert!(listing.contains("obj"), "{listing}");
}

#[test]
fn fake_gcs_takes_media_uploads_and_serves_objects_and_ranges() {
    let gcs = FakeGcs::start();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "hello").unwrap();
    let name = "a/b/obj";
    let created = curl(&[
        "--fail",
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.path().display()),
        "-H",
        "Content-Type: application/octet-stream",
        &gcs.upload_url(name),
    ]);
    assert!(created.contains("\"name\""), "{created}\n{}", gcs.log());
    assert_eq!(curl(&["--fail", &gcs.download_url(name)]), "hello");
    assert_eq!(
        curl(&["--fail", "-H", "Range: bytes=1-2", &gcs.download_url(name)]),
        "el"
    );
    assert_eq!(gcs.url("p"), format!("gs://{}/p", FakeGcs::BUCKET));
    let [(variable, path)] = &gcs.client_env()[..] else {
        panic!("one variable expected");
    };
    assert_eq!(*variable, "GOOGLE_APPLICATION_CREDENTIALS");
    let credentials: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(credentials["gcs_base_url"], gcs.base_url().as_str());
}

/// `sftp -F CONFIG -P PORT -b - nobody@IP` with `batch` on stdin.
fn sftp(sshd: &Sshd, config: &Path, batch: &str) -> Output {
    let mut child = Command::new("sftp")
        .arg("-F")
        .arg(config)
        .args(["-P", &sshd.addr().port().to_string(), "-b", "-"])
        .arg(format!("nobody@{}", sshd.addr().ip()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sftp");
    child
        .stdin
        .take()
        .expect("sftp's stdin")
        .write_all(batch.as_bytes())
        .expect("write sftp's batch");
    child.wait_with_output().expect("wait for sftp")
}

/// The `-F` file of an environment from `Sshd`: `NETWATCH_SSH_COMMAND=ssh -F FILE`.
fn config_of(env: &[(&'static str, String)]) -> String {
    let [(name, command)] = env else {
        panic!("one variable expected: {env:?}");
    };
    assert_eq!(*name, "NETWATCH_SSH_COMMAND");
    command
        .strip_prefix("ssh -F ")
        .unwrap_or_else(|| panic!("not `ssh -F FILE`: {command}"))
        .to_string()
}

#[test]
fn sshd_as_nobody_takes_sftp_puts_and_refuses_unknown_hosts_and_keys() {
    let sshd = Sshd::start(None, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        config_of(&sshd.client_env()),
        sshd.ssh_config_path().to_str().unwrap()
    );
    let target = sshd.data_dir().join("x");
    let put = sftp(
        &sshd,
        sshd.ssh_config_path(),
        &format!("put /etc/hostname {}\n", target.display()),
    );
    assert!(
        put.status.success(),
        "sftp put: {}\nsshd's log:\n{}",
        String::from_utf8_lossy(&put.stderr),
        sshd.log()
    );
    assert_eq!(
        std::fs::read(&target).expect("the uploaded file"),
        std::fs::read("/etc/hostname").unwrap()
    );
    assert!(sshd
        .url("a/b")
        .ends_with(&format!("{}/a/b", sshd.data_dir().display())));

    let unknown = sftp(
        &sshd,
        Path::new(&config_of(&sshd.unknown_host_env())),
        "ls\n",
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && stderr.contains("Host key verification failed"),
        "with an empty known_hosts: {stderr}"
    );
    let wrong = sftp(&sshd, Path::new(&config_of(&sshd.wrong_key_env())), "ls\n");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && stderr.contains("Permission denied"),
        "with an unauthorized key: {stderr}"
    );
}

#[test]
fn sshd_also_starts_inside_a_namespace_of_the_tests_own() {
    let ns = netwatch_tests::netns::NetNs::new();
    ns.exec_ok("ip", &["link", "set", "lo", "up"]);
    let sshd = Sshd::start(Some(&ns), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let target = sshd.data_dir().join("x");
    let config = sshd.ssh_config_path().to_str().unwrap();
    let port = sshd.addr().port().to_string();
    let put = ns.exec_with_stdin(
        "sftp",
        &["-F", config, "-P", &port, "-b", "-", "nobody@127.0.0.1"],
        Some(&format!("put /etc/hostname {}\n", target.display())),
    );
    assert!(
        put.status.success(),
        "sftp put in {}: {}\nsshd's log:\n{}",
        ns.name(),
        String::from_utf8_lossy(&put.stderr),
        sshd.log()
    );
    assert_eq!(
        std::fs::read(&target).expect("the uploaded file"),
        std::fs::read("/etc/hostname").unwrap()
    );
}
