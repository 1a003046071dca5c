//! Where `netwatch get` writes, run as root the way careless users run it: a device, a FIFO
//! or a directory at OUT is left alone with a clear error; `-` is standard output; a replaced
//! file keeps its owner and mode; an artifact larger than the free space is refused before
//! anything is fetched; and a killed get's temporary file is removed by the next get.

mod transfer_cli;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use netwatch_tests::require_privileges;
use transfer_cli::{mirror_table, mixed_data, stored_manifest, temporary_outputs, Cli};

const KEY: &str = "builds/app.bin";

/// A work directory with one file:// mirror holding `KEY` (the data returned).
fn stored(data: &[u8]) -> (Cli, std::path::PathBuf) {
    let cli = Cli::new("");
    let mirror = cli.subdir("mirror");
    cli.write_config(&mirror_table(
        "local",
        1,
        &format!("file://{}", mirror.display()),
    ));
    let file = cli.dir().join("app.bin");
    std::fs::write(&file, data).unwrap();
    let put = cli.run(&["put", file.to_str().unwrap(), KEY, "--json"]);
    assert!(put.ok(), "{}", put.describe());
    (cli, mirror)
}

#[test]
fn a_device_a_fifo_or_a_directory_at_out_is_left_alone_with_a_clear_error() {
    require_privileges();
    let (cli, _) = stored(&mixed_data(300 * 1024, 1));
    let fifo = cli.dir().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let device = cli.dir().join("null-twin");
    assert!(Command::new("mknod")
        .args([device.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap()
        .success());
    for (out, what) in [
        (Path::new("/dev/null"), "a character device"),
        (fifo.as_path(), "a FIFO"),
        (device.as_path(), "a character device"),
        (cli.dir(), "a directory"),
    ] {
        let before = std::fs::symlink_metadata(out).unwrap();
        let ran = cli.run(&["get", KEY, out.to_str().unwrap()]);
        ran.failure_naming(&[what, "not a regular file", "give -"]);
        let after = std::fs::symlink_metadata(out).unwrap();
        assert_eq!(
            (before.file_type(), before.ino(), before.mode()),
            (after.file_type(), after.ino(), after.mode()),
            "{} changed",
            out.display()
        );
    }
    assert!(std::fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn dash_is_standard_output_and_a_replaced_file_keeps_its_owner_and_mode() {
    require_privileges();
    let data = mixed_data(700 * 1024, 2);
    let (cli, _) = stored(&data);
    let streamed = cli.run(&["get", KEY, "-"]);
    assert!(streamed.ok(), "{}", streamed.describe());
    assert!(streamed.output.stdout == data, "stdout is not the artifact");

    let out = cli.dir().join("kept.bin");
    std::fs::write(&out, b"old").unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ran = cli.run(&["get", KEY, out.to_str().unwrap(), "--json"]);
    assert!(ran.ok(), "{}", ran.describe());
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o600)
    );
}

/// Mounts a small tmpfs on `dir` for the test's length.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs on {}", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_manifest_claiming_more_than_fits_is_refused_before_anything_is_written() {
    require_privileges();
    // 256 KiB of zeros: one chunk of the largest size.
    let (cli, mirror) = stored(&vec![0u8; 256 * 1024]);
    let (path, mut manifest) = stored_manifest(&mirror, KEY);
    let chunk = manifest["chunks"][0].clone();
    let size = chunk["size"].as_u64().unwrap();
    // The same chunk 4,000 times: a 1 GB artifact from a 256 KiB mirror.
    let copies: Vec<_> = (0..4_000u64)
        .map(|i| {
            let mut copy = chunk.clone();
            copy["offset"] = (i * size).into();
            copy
        })
        .collect();
    manifest["size"] = (4_000 * size).into();
    manifest["chunks"] = copies.into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let small = cli.dir().join("small");
    let _tmpfs = Tmpfs::mount(&small, "16m");
    let out = small.join("out.bin");
    let ran = cli.run(&["get", KEY, out.to_str().unwrap()]);
    let error = ran.failure_naming(&[
        "1048576000 bytes",
        "the free space there",
        "nothing was fetched",
    ]);
    eprintln!("refused: {error}");
    assert!(!out.exists());
    assert!(temporary_outputs(&out).is_empty());
    // And with a cap on a roomy disk.
    let roomy = cli.dir().join("roomy.bin");
    let ran = cli.run(&["get", KEY, roomy.to_str().unwrap(), "--max-size", "100MiB"]);
    ran.failure_naming(&["1048576000 bytes", "104857600 bytes", "--max-size"]);
    assert!(!roomy.exists());
}

#[test]
fn a_killed_gets_temporary_file_is_removed_by_the_next_get() {
    require_privileges();
    let data = mixed_data(300 * 1024, 3);
    let (cli, _) = stored(&data);
    let out = cli.dir().join("out.bin");
    // What a get killed with SIGKILL leaves, whatever its pid was: a file nobody holds.
    let left = cli.dir().join(".out.bin.netwatch-0123456789abcdef.part");
    let file = std::fs::File::create(&left).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let ran = cli.run(&["get", KEY, out.to_str().unwrap(), "--json"]);
    assert!(ran.ok(), "{}", ran.describe());
    assert!(!left.exists(), "the next get left {}", left.display());
    assert_eq!(std::fs::read(&out).unwrap(), data);
}
