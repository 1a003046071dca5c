//! Attaching the per-interface programs: the receive counter (XDP or tc ingress) and the tc
//! egress counter of data segments sent. Each attachment is a bpf link owned by this process.

use aya::{
    maps::{PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{
        tc::{TcAttachOptions, TcAttachType},
        LinkOrder, SchedClassifier, Xdp,
    },
};
use netwatch_common::{
    maps, IfaceCounters, TxCounters, IFACE_SLOTS, RX_PROGRAM, TX_PROGRAM, XDP_PROGRAM,
};

use super::{program, EbpfError, KernelPrograms, RxHook, RxLink, XdpMode};

impl KernelPrograms {
    /// Attaches the XDP counter to `ifindex` in the calling thread's network namespace. The
    /// kernel refuses (and this returns an error) if another program is attached there: a
    /// bpf link never replaces one.
    pub fn attach_xdp(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), EbpfError> {
        if self.rx_links.contains_key(&ifindex) {
            return Ok(());
        }
        let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?;
        let link = xdp
            .attach_to_if_index(ifindex, mode.aya_mode())
            .map_err(|source| EbpfError::AttachXdp { ifindex, source })?;
        self.rx_links.insert(ifindex, RxLink::Xdp(link));
        Ok(())
    }

    /// Attaches the receive counter to the interface `ifname` (index `ifindex`) through tc
    /// ingress (tcx), first in line; another tool's programs there keep running after it.
    pub fn attach_tc_rx(&mut self, ifindex: u32, ifname: &str) -> Result<(), EbpfError> {
        if self.rx_links.contains_key(&ifindex) {
            return Ok(());
        }
        let link = attach_tcx(&mut self.ebpf, RX_PROGRAM, ifname, TcAttachType::Ingress).map_err(
            |source| match source {
                TcxError::Program(e) => e,
                TcxError::Attach(source) => EbpfError::AttachRx {
                    ifname: ifname.to_string(),
                    source,
                },
            },
        )?;
        self.rx_links.insert(ifindex, RxLink::Tc(link));
        Ok(())
    }

    /// Attaches the receive counter to `ifindex` at `hook`.
    pub fn attach_rx(&mut self, ifindex: u32, ifname: &str, hook: RxHook) -> Result<(), EbpfError> {
        match hook {
            RxHook::Xdp(mode) => self.attach_xdp(ifindex, mode),
            RxHook::Tc => self.attach_tc_rx(ifindex, ifname),
        }
    }

    /// Attaches the egress counter to the interface `ifname` (index `ifindex`) through tcx,
    /// first in line, so it counts what other programs may later redirect. tcx links stack:
    /// another tool's programs keep running after it.
    pub fn attach_tx(&mut self, ifindex: u32, ifname: &str) -> Result<(), EbpfError> {
        if self.tx_links.contains_key(&ifindex) {
            return Ok(());
        }
        let link = attach_tcx(&mut self.ebpf, TX_PROGRAM, ifname, TcAttachType::Egress).map_err(
            |source| match source {
                TcxError::Program(e) => e,
                TcxError::Attach(source) => EbpfError::AttachTx {
                    ifname: ifname.to_string(),
                    source,
                },
            },
        )?;
        self.tx_links.insert(ifindex, link);
        Ok(())
    }

    /// Detaches both counters from `ifindex` (where attached) and forgets their counts, so a
    /// later interface that reuses the index starts from zero.
    pub fn detach(&mut self, ifindex: u32) {
        // A link may already be defunct (interface deleted); closing it is all that is left
        // to do, and cannot fail in a way that matters.
        match self.rx_links.remove(&ifindex) {
            Some(RxLink::Xdp(link)) => {
                if let Ok(xdp) = program::<Xdp>(&mut self.ebpf, XDP_PROGRAM) {
                    let _ = xdp.detach(link);
                }
            }
            Some(RxLink::Tc(link)) => {
                if let Ok(rx) = program::<SchedClassifier>(&mut self.ebpf, RX_PROGRAM) {
                    let _ = rx.detach(link);
                }
            }
            None => {}
        }
        if let Some(link) = self.tx_links.remove(&ifindex) {
            if let Ok(tx) = program::<SchedClassifier>(&mut self.ebpf, TX_PROGRAM) {
                let _ = tx.detach(link);
            }
        }
        // The next interface to get this ifindex starts from zero.
        if ifindex < IFACE_SLOTS {
            if let (Some(map), Ok(cpus)) =
                (self.ebpf.map_mut(maps::IFACE_SLOTS), aya::util::nr_cpus())
            {
                if let Ok(mut slots) = PerCpuArray::<_, IfaceCounters>::try_from(map) {
                    if let Ok(zeros) = PerCpuValues::try_from(vec![IfaceCounters::default(); cpus])
                    {
                        let _ = slots.set(ifindex, zeros, 0);
                    }
                }
            }
        } else if let Some(map) = self.ebpf.map_mut(maps::IFACE_COUNTERS) {
            if let Ok(mut counters) = PerCpuHashMap::<_, u32, IfaceCounters>::try_from(map) {
                let _ = counters.remove(&ifindex);
            }
        }
        if let Some(map) = self.ebpf.map_mut(maps::IFACE_TX) {
            if let Ok(mut counters) = PerCpuHashMap::<_, u32, TxCounters>::try_from(map) {
                let _ = counters.remove(&ifindex);
            }
        }
    }

    /// Whether the receive counter (at either hook) is attached to `ifindex`.
    pub fn rx_attached(&self, ifindex: u32) -> bool {
        self.rx_links.contains_key(&ifindex)
    }

    pub fn tx_attached(&self, ifindex: u32) -> bool {
        self.tx_links.contains_key(&ifindex)
    }

    /// How many bpf links the per-interface programs hold (two per fully watched interface).
    pub fn interface_links(&self) -> usize {
        self.rx_links.len() + self.tx_links.len()
    }
}

/// Why a tcx attach failed: the program is missing, or the kernel refused the link.
enum TcxError {
    Program(EbpfError),
    Attach(aya::programs::ProgramError),
}

/// Attaches the classifier `name` to `ifname` at `direction` through tcx, first in line.
fn attach_tcx(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
    ifname: &str,
    direction: TcAttachType,
) -> Result<aya::programs::tc::SchedClassifierLinkId, TcxError> {
    let classifier: &mut SchedClassifier = program(ebpf, name).map_err(TcxError::Program)?;
    classifier
        .attach_with_options(
            ifname,
            direction,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(TcxError::Attach)
}
