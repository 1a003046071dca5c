//! The `netwatch` command: its command line, its configuration file and the one place where
//! settings from flags, the environment, the file and the defaults are resolved. The work
//! itself lives in the member crates: `netwatch-client` (the verdict, the socket client,
//! network-aware retry), `netwatch-agent` (the privileged host agent) and
//! `netwatch-transfer` (cache-mirror transfers).
//!
//! This crate also embeds the kernel programs (`netwatch-ebpf`, built by build.rs) that the
//! agent loads: [`KERNEL_PROGRAMS`].

pub mod cli;
pub mod config;
pub mod settings;
pub mod size;

// The member crates' modules, under the names the command's code uses.
use netwatch_agent::{daemon as agent, ebpf, metrics, server, state};
use netwatch_client::{client, retry};
use netwatch_transfer as transfer;

/// The compiled kernel programs (an eBPF ELF object), built from `netwatch-ebpf` by build.rs
/// and aligned for aya.
pub static KERNEL_PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netwatch.bpf.o"));
