//! The receive counter's own cost, measured by the kernel with BPF_PROG_TEST_RUN: the program
//! run `repeat` times on one packet, with no device, no network stack and no hook path around
//! it. Beside the in-place figure (bpf stats while traffic flows) it says how much of that is
//! the program itself.

use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};

use super::{program_error, EbpfError, KernelPrograms, RxHook, RX_PROGRAM, XDP_PROGRAM};

impl KernelPrograms {
    /// The kernel's mean time per run of the receive counter at `hook` over `repeat` runs on
    /// `packet` (a whole Ethernet frame). XDP's run counts `packet` under ifindex 0, which no
    /// interface has; tc's under the loopback's.
    pub fn rx_test_run(
        &self,
        hook: RxHook,
        packet: &[u8],
        repeat: u32,
    ) -> Result<Duration, EbpfError> {
        let name = match hook {
            RxHook::Xdp(_) => XDP_PROGRAM,
            RxHook::Tc => RX_PROGRAM,
        };
        let program = self.ebpf.program(name).ok_or(EbpfError::Missing(name))?;
        let options = TestRunOptions {
            data_in: Some(packet),
            repeat,
            ..TestRunOptions::new()
        };
        let result = match hook {
            RxHook::Xdp(_) => <&Xdp>::try_from(program)
                .map_err(program_error(name))?
                .test_run(options),
            RxHook::Tc => <&SchedClassifier>::try_from(program)
                .map_err(program_error(name))?
                .test_run(options),
        };
        Ok(result.map_err(program_error(name))?.duration)
    }
}
