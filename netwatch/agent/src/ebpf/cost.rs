//! The XDP counter's own cost, measured by the kernel with BPF_PROG_TEST_RUN: the program run
//! `repeat` times on one packet, with no device, no network stack and no XDP driver path
//! around it. Beside the in-place figure (bpf stats while traffic flows) it says how much of
//! that is the program itself.

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::{program_error, EbpfError, KernelPrograms, XDP_PROGRAM};

impl KernelPrograms {
    /// The kernel's mean time per run of the XDP counter over `repeat` runs on `packet` (a
    /// whole Ethernet frame). The run counts `packet` under ifindex 0, which no interface
    /// has.
    pub fn xdp_test_run(&self, packet: &[u8], repeat: u32) -> Result<Duration, EbpfError> {
        let xdp: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .ok_or(EbpfError::Missing(XDP_PROGRAM))?
            .try_into()
            .map_err(program_error(XDP_PROGRAM))?;
        let result = xdp
            .test_run(TestRunOptions {
                data_in: Some(packet),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(program_error(XDP_PROGRAM))?;
        Ok(result.duration)
    }
}
