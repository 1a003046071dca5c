//! Owns netwatch's kernel programs: loading them, attaching them, and reading their maps.
//!
//! Every attachment is a bpf link owned by this process, so nothing stays attached after the
//! process ends, however it ends (kernel links are released with their last file descriptor).

mod btf;
mod counters;
mod events;
mod tracefs;

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf},
    programs::{xdp::XdpLinkId, ProgramError, TracePoint, Xdp},
    Ebpf, EbpfLoader,
};
use netwatch_common::{
    globals, maps, DestCounters, DestKey, IfaceCounters, KernelStat, NetnsFilter, SourceCounters,
    KERNEL_STAT_COUNT, MAX_WATCHED_SOURCES, RESET_PROGRAM, RETRANSMIT_PROGRAM, SOCK_STATE_PROGRAM,
    XDP_PROGRAM,
};

pub use crate::clock::monotonic_ns;
pub use counters::{DestStats, IfaceRx, SourceRx};
pub use events::{KernelEvents, KernelSignal, TcpSignal};
pub use netwatch_common::EventKind;

/// The compiled kernel programs, built from `netwatch-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netwatch.bpf.o"));

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

/// Kernel ids of the loaded programs, as `bpftool prog` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramIds {
    pub xdp: u32,
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

/// The loaded programs: tracepoints attached at load, XDP attached per interface on demand.
pub struct Probes {
    ebpf: Ebpf,
    xdp_links: HashMap<u32, XdpLinkId>,
    ids: ProgramIds,
}

impl Probes {
    /// Loads every program and attaches the TCP tracepoints (which see every namespace).
    /// Mounts tracefs first if nothing has mounted it.
    pub fn load() -> Result<Self, EbpfError> {
        let tracefs = tracefs::ensure_mounted()?;
        let mut layouts = Vec::with_capacity(TRACEPOINTS.len());
        for (_, group, name, global) in TRACEPOINTS {
            layouts.push((global, tracefs::read_layout(&tracefs, group, name)?));
        }
        let filter = own_netns_filter();
        let mut loader = EbpfLoader::new();
        for (global, layout) in &layouts {
            loader.override_global(global, layout, true);
        }
        loader.override_global(globals::NETNS_FILTER, &filter, true);
        let mut ebpf = loader.load(OBJECT)?;

        let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
        xdp.load().map_err(program_error(XDP_PROGRAM))?;
        let xdp_id = xdp.info().map_err(program_error(XDP_PROGRAM))?.id();

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
            xdp_links: HashMap::new(),
            ids: ProgramIds {
                xdp: xdp_id,
                retransmit,
                reset,
                sock_state,
            },
        })
    }

    pub fn program_ids(&self) -> ProgramIds {
        self.ids
    }

    /// Attaches the XDP counter to `ifindex` in the calling thread's network namespace. The
    /// kernel refuses (and this returns an error) if another program is attached there: a
    /// bpf link never replaces one.
    pub fn attach_xdp(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), EbpfError> {
        if self.xdp_links.contains_key(&ifindex) {
            return Ok(());
        }
        let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?;
        let link = xdp
            .attach_to_if_index(ifindex, mode.aya_mode())
            .map_err(|source| EbpfError::AttachXdp { ifindex, source })?;
        self.xdp_links.insert(ifindex, link);
        Ok(())
    }

    /// Detaches XDP from `ifindex` (if attached) and forgets its counters, so a later
    /// interface that reuses the index starts from zero. Returns whether it was attached.
    pub fn detach_xdp(&mut self, ifindex: u32) -> bool {
        let link = self.xdp_links.remove(&ifindex);
        let attached = link.is_some();
        if let Some(link) = link {
            if let Ok(xdp) = program::<Xdp>(&mut self.ebpf, XDP_PROGRAM) {
                // The link may already be defunct (interface deleted); closing it is all
                // that is left to do, and cannot fail in a way that matters.
                let _ = xdp.detach(link);
            }
        }
        if let Some(map) = self.ebpf.map_mut(maps::IFACE_COUNTERS) {
            if let Ok(mut counters) = PerCpuHashMap::<_, u32, IfaceCounters>::try_from(map) {
                let _ = counters.remove(&ifindex);
            }
        }
        attached
    }

    pub fn xdp_attached(&self, ifindex: u32) -> bool {
        self.xdp_links.contains_key(&ifindex)
    }

    /// What XDP counted on `ifindex` since it was attached; `None` before its first packet.
    pub fn iface_rx(&self, ifindex: u32) -> Result<Option<IfaceRx>, EbpfError> {
        let counters: PerCpuHashMap<&MapData, u32, IfaceCounters> =
            map(&self.ebpf, maps::IFACE_COUNTERS)?;
        match counters.get(&ifindex, 0) {
            Ok(per_cpu) => Ok(Some(IfaceRx::sum(per_cpu.iter()))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(EbpfError::Map {
                map: maps::IFACE_COUNTERS,
                source,
            }),
        }
    }

    /// TCP signals per destination address since load.
    pub fn dest_stats(&self) -> Result<HashMap<IpAddr, DestStats>, EbpfError> {
        let counters: PerCpuHashMap<&MapData, DestKey, DestCounters> =
            map(&self.ebpf, maps::DEST_COUNTERS)?;
        let mut stats = HashMap::new();
        for entry in counters.iter() {
            let (key, per_cpu) = entry.map_err(|source| EbpfError::Map {
                map: maps::DEST_COUNTERS,
                source,
            })?;
            if let Some(addr) = counters::dest_addr(&key) {
                stats.insert(addr, DestStats::sum(per_cpu.iter()));
            }
        }
        Ok(stats)
    }

    /// The kernel side's accounting of events sent and lost.
    pub fn kernel_stats(&self) -> Result<KernelStats, EbpfError> {
        let slots: PerCpuArray<&MapData, u64> = map(&self.ebpf, maps::KERNEL_STATS)?;
        let mut totals = [0u64; KERNEL_STAT_COUNT as usize];
        for (index, total) in (0..KERNEL_STAT_COUNT).zip(&mut totals) {
            let per_cpu = slots.get(&index, 0).map_err(|source| EbpfError::Map {
                map: maps::KERNEL_STATS,
                source,
            })?;
            *total = per_cpu.iter().sum();
        }
        Ok(KernelStats {
            events_sent: totals[KernelStat::EventsSent as usize],
            events_rate_limited: totals[KernelStat::EventsRateLimited as usize],
            events_ring_full: totals[KernelStat::EventsRingFull as usize],
            dest_insert_failed: totals[KernelStat::DestInsertFailed as usize],
        })
    }

    /// Makes XDP count packets from these source addresses (the configured endpoints),
    /// replacing any earlier set. At most `MAX_WATCHED_SOURCES`; extra ones are ignored.
    pub fn watch_sources(&mut self, sources: &[IpAddr]) -> Result<(), EbpfError> {
        let map_error = |map| move |source| EbpfError::Map { map, source };
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| EbpfError::Map {
            map: maps::WATCHED_SOURCES,
            source: aya::maps::MapError::IoError(e),
        })?;
        let wanted: Vec<DestKey> = sources
            .iter()
            .take(MAX_WATCHED_SOURCES as usize)
            .map(|addr| counters::dest_key(*addr))
            .collect();
        {
            let raw = self
                .ebpf
                .map_mut(maps::WATCHED_SOURCES)
                .ok_or(EbpfError::Missing(maps::WATCHED_SOURCES))?;
            let mut watched = PerCpuHashMap::<_, DestKey, SourceCounters>::try_from(raw)
                .map_err(map_error(maps::WATCHED_SOURCES))?;
            let stale: Vec<DestKey> = watched
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !wanted.contains(k))
                .collect();
            for key in stale {
                watched
                    .remove(&key)
                    .map_err(map_error(maps::WATCHED_SOURCES))?;
            }
            for key in &wanted {
                if watched.get(key, 0).is_err() {
                    let zeros = PerCpuValues::try_from(vec![SourceCounters::default(); cpus])
                        .map_err(|e| EbpfError::Map {
                            map: maps::WATCHED_SOURCES,
                            source: aya::maps::MapError::IoError(e),
                        })?;
                    watched
                        .insert(key, zeros, 0)
                        .map_err(map_error(maps::WATCHED_SOURCES))?;
                }
            }
        }
        let raw = self
            .ebpf
            .map_mut(maps::WATCH_COUNT)
            .ok_or(EbpfError::Missing(maps::WATCH_COUNT))?;
        let mut count = Array::<_, u32>::try_from(raw).map_err(map_error(maps::WATCH_COUNT))?;
        count
            .set(0, wanted.len() as u32, 0)
            .map_err(map_error(maps::WATCH_COUNT))?;
        Ok(())
    }

    /// What XDP received from a watched source; `None` if it is not watched.
    pub fn source_rx(&self, addr: IpAddr) -> Result<Option<SourceRx>, EbpfError> {
        let watched: PerCpuHashMap<&MapData, DestKey, SourceCounters> =
            map(&self.ebpf, maps::WATCHED_SOURCES)?;
        match watched.get(&counters::dest_key(addr), 0) {
            Ok(per_cpu) => Ok(Some(SourceRx::sum(per_cpu.iter()))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(EbpfError::Map {
                map: maps::WATCHED_SOURCES,
                source,
            }),
        }
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
fn own_netns_filter() -> NetnsFilter {
    use std::os::unix::fs::MetadataExt;
    let inum = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino() as u32);
    let btf = std::fs::read(btf::VMLINUX_BTF)
        .ok()
        .and_then(|data| btf::Btf::parse(&data));
    match (inum, btf.as_ref().and_then(|b| btf::netns_filter(b, 0))) {
        (Ok(inum), Some(filter)) => NetnsFilter { inum, ..filter },
        _ => {
            tracing::warn!("kernel BTF lacks what is needed to tell network namespaces apart: TCP events from every namespace will count");
            NetnsFilter::OFF
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
