//! Which interfaces carry netwatch's counters, and the rules that decide it: every watched
//! non-loopback interface gets the receive counter (at tc ingress by default; at XDP, except
//! where another tool's XDP program already runs); the tc egress counter of data segments goes
//! only on the links the verdict's loss ratios use: those with a default route and those an
//! endpoint is routed through. tcx links stack with other tools' programs. Attaching a tcx
//! program costs the kernel an RCU grace period under the RTNL lock (about 6 ms): the default
//! interface selection leaves out the devices containers create by the hundred, where on
//! every interface a storm of 300 veth pairs took 4 s to create instead of 0.3 s, and every
//! `ip` command on the host waited.

use std::collections::{HashMap, HashSet};

use tracing::{debug, info, warn};

use crate::{
    ebpf::{EbpfError, KernelPrograms, RxHook},
    netlink::Link,
};

/// What netwatch did about one interface's receive counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxState {
    /// Our counter is attached.
    Attached,
    /// Another program holds the XDP hook; the interface is watched by netlink alone.
    LeftAlone { other_prog_id: u32 },
    /// Attaching failed for another reason (logged); netlink alone.
    Failed,
}

pub struct CounterAttacher {
    hook: RxHook,
    states: HashMap<u32, RxState>,
    /// Interfaces where the egress counter could not be attached (warned about once).
    tx_failed: HashSet<u32>,
}

impl CounterAttacher {
    pub fn new(hook: RxHook) -> Self {
        Self {
            hook,
            states: HashMap::new(),
            tx_failed: HashSet::new(),
        }
    }

    pub fn attached_count(&self) -> usize {
        self.states
            .values()
            .filter(|s| **s == RxState::Attached)
            .count()
    }

    /// Attaches the receive counter to `link` where it should carry one and does not yet.
    /// Called for every link update, so an interface another tool's XDP program releases is
    /// picked up later.
    pub fn consider(&mut self, probes: &mut KernelPrograms, link: &Link) {
        if link.loopback || probes.rx_attached(link.ifindex) {
            return;
        }
        if let (RxHook::Xdp(_), Some(other_prog_id)) = (self.hook, link.xdp_prog_id) {
            let state = RxState::LeftAlone { other_prog_id };
            if self.states.insert(link.ifindex, state) != Some(state) {
                info!(
                    ifindex = link.ifindex,
                    ifname = %link.name,
                    other_prog_id,
                    "xdp left alone: another program is attached"
                );
            }
            return;
        }
        match probes.attach_rx(link.ifindex, &link.name, self.hook) {
            Ok(()) => {
                self.states.insert(link.ifindex, RxState::Attached);
                let ids = probes.program_ids();
                info!(
                    ifindex = link.ifindex,
                    ifname = %link.name,
                    prog_id = match self.hook {
                        RxHook::Xdp(_) => ids.xdp,
                        RxHook::Tc => ids.rx,
                    },
                    hook = self.hook.as_str(),
                    "receive counter attached"
                );
            }
            // The interface went away between its event and this attach: nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                debug!(ifindex = link.ifindex, ifname = %link.name, "interface gone before the receive counter could attach");
            }
            Err(e) => self.failed(link, &e),
        }
    }

    /// [`CounterAttacher::consider`] for a link the verdict rests on, asked at every judgement: an
    /// attach that failed is not tried again each time (the link's next update retries it).
    pub fn consider_needed(&mut self, probes: &mut KernelPrograms, link: &Link) {
        if self.states.get(&link.ifindex) != Some(&RxState::Failed) {
            self.consider(probes, link);
        }
    }

    /// Attaches the egress counter to each of `links` (the ones the verdict's ratios use)
    /// that lacks it.
    pub fn count_egress<'a>(
        &mut self,
        probes: &mut KernelPrograms,
        links: impl Iterator<Item = &'a Link>,
    ) {
        for link in links.filter(|l| !l.loopback) {
            self.consider_tx(probes, link);
        }
    }

    fn consider_tx(&mut self, probes: &mut KernelPrograms, link: &Link) {
        // A failure is not retried on every update: it would fail the same way.
        if probes.tx_attached(link.ifindex) || self.tx_failed.contains(&link.ifindex) {
            return;
        }
        match probes.attach_tx(link.ifindex, &link.name) {
            Ok(()) => {
                debug!(ifindex = link.ifindex, ifname = %link.name, "egress counter attached");
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => {
                if self.tx_failed.insert(link.ifindex) {
                    warn!(ifindex = link.ifindex, ifname = %link.name, error = %e, "egress counter not attached: this link's loss ratio counts packets, not data segments");
                }
            }
        }
    }

    fn failed(&mut self, link: &Link, error: &EbpfError) {
        if self.states.insert(link.ifindex, RxState::Failed) != Some(RxState::Failed) {
            warn!(
                ifindex = link.ifindex,
                ifname = %link.name,
                error = %error,
                hook = self.hook.as_str(),
                "receive counter attach failed: watching this interface by netlink alone"
            );
        }
    }

    /// Forgets an interface that is gone, and releases its links.
    pub fn forget(&mut self, probes: &mut KernelPrograms, ifindex: u32) {
        self.states.remove(&ifindex);
        self.tx_failed.remove(&ifindex);
        probes.detach(ifindex);
    }
}
