//! Owns netwatch's kernel programs: loading them, attaching them, and reading their maps.
//!
//! Every attachment is a bpf link owned by this process, so nothing stays attached after the
//! process ends, however it ends (kernel links are released with their last file descriptor).

mod btf;
mod cost;
mod counters;
mod events;
mod interfaces;
mod read;
mod tracefs;

use std::{collections::HashMap, path::PathBuf};

use aya::{
    maps::RingBuf,
    programs::{
        tc::SchedClassifierLinkId, xdp::XdpLinkId, ProgramError, SchedClassifier, TracePoint, Xdp,
    },
    Ebpf, EbpfLoader,
};
use netwatch_common::{
    globals, maps, NetnsFilter, SocketOffsets, RESET_PROGRAM, RETRANSMIT_PROGRAM, RX_PROGRAM,
    SOCK_STATE_PROGRAM, TX_PROGRAM, XDP_PROGRAM,
};

pub use crate::clock::monotonic_ns;
pub use counters::{is_outage, outage_lately, DestStats, IfaceRx, IfaceTx, PeerStats};
pub use events::{KernelEvents, KernelSignal, TcpSignal};
pub use netwatch_common::EventKind;

/// The TCP tracepoints: (program, tracefs group, tracepoint, layout global).
const TRACEPOINTS: [(&str, &str, &str, &str); 3] = [
    (
        RETRANSMIT_PROGRAM,
        "tcp",
        "tcp_retransmit_skb",
        globals::RETRANSMIT_LAYOUT,
    ),
    (
        RESET_PROGRAM,
        "tcp",
        "tcp_receive_reset",
        globals::RESET_LAYOUT,
    ),
    (
        SOCK_STATE_PROGRAM,
        "sock",
        "inet_sock_set_state",
        globals::SOCK_STATE_LAYOUT,
    ),
];

/// What went wrong with the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// tracefs was not mounted and mounting it failed.
    #[error("tracefs is not mounted and mounting it at {path} failed (needs root): {source}")]
    MountTracefs {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tracepoint's format file could not be read: the kernel lacks the tracepoint.
    #[error("cannot read the tracepoint format {path}: {source}")]
    TracepointFormat {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tracepoint lacks a field netwatch needs, or it has another size on this kernel.
    #[error("the tracepoint format {path} has no usable field {field}")]
    TracepointField { path: PathBuf, field: &'static str },
    /// The object could not be loaded (maps created, relocations applied).
    #[error("loading netwatch's eBPF object failed (needs root, or CAP_BPF and CAP_PERFMON): {0}")]
    Load(#[from] aya::EbpfError),
    /// A program was refused by the verifier or could not be attached.
    #[error("eBPF program {program}: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    /// XDP could not be attached to an interface.
    #[error("attaching XDP to ifindex {ifindex} failed: {source}")]
    AttachXdp { ifindex: u32, source: ProgramError },
    /// The tc ingress receive counter could not be attached to an interface.
    #[error("attaching the tc ingress counter to {ifname} failed: {source}")]
    AttachRx {
        ifname: String,
        source: ProgramError,
    },
    /// The tc egress counter could not be attached to an interface.
    #[error("attaching the tc egress counter to {ifname} failed: {source}")]
    AttachTx {
        ifname: String,
        source: ProgramError,
    },
    /// A map could not be read.
    #[error("reading map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    /// The ring buffer could not be registered with the async runtime.
    #[error("watching the TCP event ring buffer failed: {0}")]
    EventsReader(std::io::Error),
    /// The object lacks a program or map this code expects: the build is inconsistent.
    #[error("netwatch's eBPF object has no {0}; rebuild netwatch")]
    Missing(&'static str),
}

impl EbpfError {
    /// The errno behind a failed attach, e.g. ENODEV when the interface has gone, or EBUSY
    /// when another program holds the hook.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::AttachXdp {
                source: ProgramError::SyscallError(e),
                ..
            }
            | Self::AttachRx {
                source: ProgramError::SyscallError(e),
                ..
            }
            | Self::AttachTx {
                source: ProgramError::SyscallError(e),
                ..
            } => e.io_error.raw_os_error(),
            _ => None,
        }
    }
}

/// Where XDP runs. Generic (in the kernel's stack) is the default because native XDP makes
/// some drivers reconfigure their rings, briefly dropping the link a monitor is watching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    #[default]
    Generic,
    Native,
}

impl XdpMode {
    fn aya_mode(self) -> aya::programs::xdp::XdpMode {
        match self {
            Self::Generic => aya::programs::xdp::XdpMode::Skb,
            Self::Native => aya::programs::xdp::XdpMode::Driver,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Native => "native",
        }
    }
}

/// Where the receive counter runs on each interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxHook {
    /// tc ingress (tcx): no copy of the packet, and it stacks with other tools' programs.
    #[default]
    Tc,
    /// XDP, generic or native. Generic XDP copies every non-linear buffer (any GSO or GRO
    /// packet) before its program runs, and only one program may hold an interface's hook.
    Xdp(XdpMode),
}

impl RxHook {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tc => "tc",
            Self::Xdp(XdpMode::Generic) => "xdp generic",
            Self::Xdp(XdpMode::Native) => "xdp native",
        }
    }
}

/// A receive counter's attachment.
enum RxLink {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// Kernel ids of the loaded programs, as `bpftool prog` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramIds {
    pub xdp: u32,
    pub rx: u32,
    pub tx: u32,
    pub retransmit: u32,
    pub reset: u32,
    pub sock_state: u32,
}

/// What one program has cost, from the kernel's bpf stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramCost {
    pub name: String,
    pub id: u32,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Turns on the kernel's run-time accounting of every BPF program for as long as the
/// returned descriptor is open (BPF_ENABLE_STATS), without touching the sysctl.
pub fn enable_run_time_stats() -> Result<std::os::fd::OwnedFd, std::io::Error> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| e.io_error)
}

/// The kernel side's own accounting (see `netwatch_common::KernelStat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub events_sent: u64,
    pub events_rate_limited: u64,
    pub events_ring_full: u64,
    pub dest_insert_failed: u64,
}

/// The loaded programs: tracepoints attached at load, the receive counter and the tc egress
/// counter attached per interface on demand (`interfaces.rs`), maps read in `read.rs`.
pub struct KernelPrograms {
    ebpf: Ebpf,
    rx_links: HashMap<u32, RxLink>,
    tx_links: HashMap<u32, SchedClassifierLinkId>,
    ids: ProgramIds,
}

impl KernelPrograms {
    /// Loads every program of `object` (the compiled `netwatch-ebpf`, which the `netwatch`
    /// binary embeds as `KERNEL_PROGRAMS`; 8-byte aligned, as aya needs) and attaches the TCP
    /// tracepoints (which see every namespace). Mounts tracefs first if nothing has mounted
    /// it.
    pub fn load(object: &[u8]) -> Result<Self, EbpfError> {
        let tracefs = tracefs::ensure_mounted()?;
        let mut layouts = Vec::with_capacity(TRACEPOINTS.len());
        for (_, group, name, global) in TRACEPOINTS {
            layouts.push((global, tracefs::read_layout(&tracefs, group, name)?));
        }
        let btf = std::fs::read(btf::VMLINUX_BTF)
            .ok()
            .and_then(|data| btf::Btf::parse(&data));
        let filter = own_netns_filter(btf.as_ref());
        let offsets = socket_offsets(btf.as_ref());
        let mut loader = EbpfLoader::new();
        for (global, layout) in &layouts {
            loader.override_global(global, layout, true);
        }
        loader.override_global(globals::NETNS_FILTER, &filter, true);
        loader.override_global(globals::SOCKET_OFFSETS, &offsets, true);
        let mut ebpf = loader.load(object)?;

        let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
        xdp.load().map_err(program_error(XDP_PROGRAM))?;
        let xdp_id = xdp.info().map_err(program_error(XDP_PROGRAM))?.id();
        let [rx_id, tx_id] = [RX_PROGRAM, TX_PROGRAM].map(|name| {
            let classifier: &mut SchedClassifier = program(&mut ebpf, name)?;
            classifier.load().map_err(program_error(name))?;
            Ok::<_, EbpfError>(classifier.info().map_err(program_error(name))?.id())
        });
        let (rx_id, tx_id) = (rx_id?, tx_id?);

        let mut tracepoint_ids = [0u32; TRACEPOINTS.len()];
        for ((program_name, group, name, _), id) in TRACEPOINTS.iter().zip(&mut tracepoint_ids) {
            let tracepoint: &mut TracePoint = program(&mut ebpf, program_name)?;
            tracepoint.load().map_err(program_error(program_name))?;
            tracepoint
                .attach(group, name)
                .map_err(program_error(program_name))?;
            *id = tracepoint.info().map_err(program_error(program_name))?.id();
        }
        let [retransmit, reset, sock_state] = tracepoint_ids;
        Ok(Self {
            ebpf,
            rx_links: HashMap::new(),
            tx_links: HashMap::new(),
            ids: ProgramIds {
                xdp: xdp_id,
                rx: rx_id,
                tx: tx_id,
                retransmit,
                reset,
                sock_state,
            },
        })
    }

    pub fn program_ids(&self) -> ProgramIds {
        self.ids
    }

    /// Run time and run count per program, from the kernel's accounting (zero unless
    /// kernel.bpf_stats_enabled or a BPF_ENABLE_STATS file descriptor is held).
    pub fn program_costs(&self) -> Vec<ProgramCost> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramCost {
                    name: name.to_string(),
                    id: info.id(),
                    run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                    run_count: info.run_count(),
                })
            })
            .collect()
    }

    /// Hands over the ring buffer of TCP events; `None` if it was already taken. Needs a
    /// tokio runtime.
    pub fn take_events(&mut self) -> Result<Option<KernelEvents>, EbpfError> {
        let Some(events) = self.ebpf.take_map(maps::EVENTS) else {
            return Ok(None);
        };
        let ring = RingBuf::try_from(events).map_err(|source| EbpfError::Map {
            map: maps::EVENTS,
            source,
        })?;
        let reader = KernelEvents::new(ring).map_err(EbpfError::EventsReader)?;
        Ok(Some(reader))
    }
}

/// Counts only the calling thread's network namespace, where the kernel's BTF allows; else
/// every namespace (with a warning: on a host with containers, their TCP would count too).
fn own_netns_filter(btf: Option<&btf::Btf>) -> NetnsFilter {
    use std::os::unix::fs::MetadataExt;
    let inum = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino() as u32);
    match (inum, btf.and_then(|b| btf::netns_filter(b, 0))) {
        (Ok(inum), Some(filter)) => NetnsFilter { inum, ..filter },
        _ => {
            tracing::warn!("kernel BTF lacks what is needed to tell network namespaces apart: TCP events from every namespace will count");
            NetnsFilter::OFF
        }
    }
}

/// Lets the retransmit program count segments and read the RTO backoff, where the kernel's
/// BTF allows; else every retransmitted buffer counts as one segment.
fn socket_offsets(btf: Option<&btf::Btf>) -> SocketOffsets {
    match btf.and_then(btf::socket_offsets) {
        Some(offsets) => offsets,
        None => {
            tracing::warn!("kernel BTF lacks what is needed to count retransmitted segments: each retransmitted buffer counts as one segment");
            SocketOffsets::OFF
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(EbpfError::Missing(name))?;
    program.try_into().map_err(program_error(name))
}

fn program_error(program: &'static str) -> impl Fn(ProgramError) -> EbpfError {
    move |source| EbpfError::Program { program, source }
}

fn map<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, EbpfError>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let raw = ebpf.map(name).ok_or(EbpfError::Missing(name))?;
    T::try_from(raw).map_err(|source| EbpfError::Map { map: name, source })
}
