//! The agent binary refuses a configuration file it does not fully understand, says where and
//! why, and leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netwatch_tests::agent::{self, default_socket, write_config};
use netwatch_tests::netns::NetNs;
use netwatch_tests::require_privileges;

#[test]
fn a_misspelt_key_stops_the_agent_with_file_line_and_suggestion() {
    require_privileges();
    let ns = NetNs::new();
    let config = write_config(
        "# a test configuration\n[agent]\nreport_intervall = \"2s\"\nxdp_mode = \"generic\"\n",
    );
    let path = config
        .path()
        .to_str()
        .expect("a UTF-8 temp path")
        .to_string();
    let mut child = Command::new(agent::binary())
        .args(["agent", "--netns", ns.name(), "--config", &path])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait for the agent").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent kept running with a bad config file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("the agent's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the agent accepted a config with an unknown key: {}\n{stderr}",
        output.status
    );
    for wanted in [
        path.as_str(),
        "line 3",
        "report_intervall",
        "did you mean `report_interval`",
    ] {
        assert!(
            stderr.contains(wanted),
            "the error does not mention `{wanted}`:\n{stderr}"
        );
    }
    let socket = default_socket(&ns);
    assert!(
        !socket.exists(),
        "the agent left {} behind after refusing its config",
        socket.display()
    );
}
