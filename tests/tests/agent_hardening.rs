//! A root agent on a shared host, tried as an attacker would: it runs unprivileged once
//! attached, a socket directory others can write is refused (so a swapped symlink never gets
//! root to touch another file), one user cannot take every client slot, and clients refuse
//! a socket someone else serves.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netwatch_tests::agent::{binary, Agent};
use netwatch_tests::netns::NetNs;
use netwatch_tests::require_privileges;
use netwatch_tests::users::{describe, python_as_nobody, run_bounded, Background};

const STARTUP: Duration = Duration::from_secs(30);

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_string())
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}:\n{status}"))
}

#[test]
fn once_attached_the_agent_runs_unprivileged_with_no_new_privileges_and_seccomp() {
    require_privileges();
    let ns = NetNs::new();
    let agent = Agent::start(&ns);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let pid = agent.pid();
    let uids = status_field(pid, "Uid");
    eprintln!(
        "agent {pid}: Uid {uids}; CapEff {}; NoNewPrivs {}; Seccomp {}",
        status_field(pid, "CapEff"),
        status_field(pid, "NoNewPrivs"),
        status_field(pid, "Seccomp")
    );
    assert!(
        uids.split_whitespace().all(|uid| uid != "0"),
        "the agent still has uid 0 somewhere: Uid {uids}"
    );
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2", "no seccomp filter");
    // CAP_NET_ADMIN (12) and CAP_BPF (39), nothing else.
    assert_eq!(status_field(pid, "CapEff"), "0000008000001000");
    // And it still works: it watches a link that appears now.
    ns.block_on(netwatch_tests::topology::add_veth("hard0", 30, "hard1", 31));
    agent.wait_for(
        "link added",
        |l| l["ifname"] == "hard0",
        Duration::from_secs(10),
    );
    agent.wait_for(
        "receive counter attached",
        |l| l["ifname"] == "hard0",
        Duration::from_secs(10),
    );
}

#[test]
fn a_socket_directory_others_can_write_is_refused_and_a_swapped_symlink_changes_nothing() {
    require_privileges();
    let ns = NetNs::new();
    // A root-owned file an attacker wants chmod'ed for them.
    let victim = tempfile::NamedTempFile::new().expect("a victim file");
    std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = tempfile::tempdir().expect("a socket directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = dir.path().join("agent.sock");
    // As nobody: swap the socket's name for a symlink to the victim, over and over.
    let swapper = python_as_nobody(&format!(
        "import os, time\n\
         end = time.time() + 120\n\
         while time.time() < end:\n\
         \x20   try:\n\
         \x20       os.unlink({socket:?})\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         \x20   try:\n\
         \x20       os.symlink({victim:?}, {socket:?})\n\
         \x20   except OSError:\n\
         \x20       pass\n",
        socket = socket.display().to_string(),
        victim = victim.path().display().to_string(),
    ))
    .spawn()
    .map(Background)
    .expect("start the swapper");
    let config = "[socket]\nmode = \"0666\"\ngroup = \"users\"\n";
    let config = netwatch_tests::agent::write_config(config);
    for start in 1..=20 {
        let output = run_bounded(
            Command::new(binary())
                .args([
                    "agent",
                    "--netns",
                    ns.name(),
                    "--metrics",
                    "off",
                    "--socket",
                ])
                .arg(&socket)
                .arg("--config")
                .arg(config.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("not safe for root to create a socket"),
            "start {start}: the agent did not refuse the world-writable directory: {}",
            describe(&output)
        );
    }
    drop(swapper);
    let meta = std::fs::metadata(victim.path()).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 0, 0),
        "the victim's mode or owner changed"
    );
}

#[test]
fn one_user_holding_every_connection_it_can_does_not_stop_roots_wait_online() {
    require_privileges();
    let pair = netwatch_tests::topology::Pair::new();
    pair.default_route_via_a();
    let agent = Agent::start(&pair.b);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let socket = agent.socket().display().to_string();
    // As nobody: 256 subscriptions, held open.
    let _hog = python_as_nobody(&format!(
        "import socket, time\n\
         held = []\n\
         for _ in range(256):\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   s.connect({socket:?})\n\
         \x20   s.sendall(b'{{\"request\":\"subscribe\"}}\\n')\n\
         \x20   held.append(s)\n\
         print('held', len(held), flush=True)\n\
         time.sleep(120)\n"
    ))
    .spawn()
    .map(Background)
    .expect("start the hog");
    // Wait until the agent has refused some of them: the hog is at its cap.
    agent.wait_for(
        "refused a client: too many clients: uid 65534 holds 64 connections, the most one user may; close some and try again",
        |_| true,
        Duration::from_secs(20),
    );
    let _ping = pair.ping_a_from_b("0.1", 100, Duration::from_secs(15));
    let started = Instant::now();
    let output = run_bounded(
        Command::new(binary())
            .args(["wait-online", "--timeout", "10", "--socket", &socket])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        Duration::from_secs(20),
    );
    eprintln!(
        "root's wait-online beside 256 held connections: {} after {:.2}s",
        output.status,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn clients_refuse_a_socket_served_by_someone_else() {
    require_privileges();
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = dir.path().join("squatted.sock");
    // As nobody: a fake agent that says the host is Up.
    let _impostor = python_as_nobody(&format!(
        "import socket, json\n\
         srv = socket.socket(socket.AF_UNIX)\n\
         srv.bind({socket:?})\n\
         srv.listen(8)\n\
         fake = {{'reply':'wait','outcome':'up','verdict':{{'health':'up','reasons':['trust me'],'since_ns':1}},'at_unix_ms':1,'now_ns':1}}\n\
         while True:\n\
         \x20   c, _ = srv.accept()\n\
         \x20   c.recv(65536)\n\
         \x20   c.sendall((json.dumps(fake) + '\\n').encode())\n\
         \x20   c.close()\n",
        socket = socket.display().to_string()
    ))
    .spawn()
    .map(Background)
    .expect("start the impostor");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "the impostor never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = run_bounded(
        Command::new(binary())
            .args(["wait-online", "--timeout", "2", "--socket"])
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() == Some(1) && stderr.contains("refusing the process serving"),
        "wait-online trusted a socket served by nobody: {}",
        describe(&output)
    );
}
