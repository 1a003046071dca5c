//! The mirror servers the transfer tests rely on start and behave as those tests assume.

use std::process::Command;

use netwatch_tests::servers::{free_loopback_addr, nginx::Nginx};

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
