//! Reading the kernel programs' maps into totals userspace can use, and setting the peers
//! they watch.

use std::{collections::HashMap, net::IpAddr};

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use netwatch_common::{
    maps, DestCounters, DestKey, IfaceCounters, KernelStat, PeerCounters, TxCounters, IFACE_SLOTS,
    KERNEL_STAT_COUNT, MAX_WATCHED_PEERS,
};

use super::{
    counters::{self, CpuTotal, DestStats, IfaceRx, IfaceTx, PeerStats},
    map, EbpfError, KernelPrograms, KernelStats,
};

impl KernelPrograms {
    /// What XDP counted on `ifindex` since it was attached; `None` before its first packet.
    pub fn iface_rx(&self, ifindex: u32) -> Result<Option<IfaceRx>, EbpfError> {
        if ifindex < IFACE_SLOTS {
            let slots: PerCpuArray<&MapData, IfaceCounters> = map(&self.ebpf, maps::IFACE_SLOTS)?;
            let per_cpu = slots.get(&ifindex, 0).map_err(|source| EbpfError::Map {
                map: maps::IFACE_SLOTS,
                source,
            })?;
            let total = IfaceRx::sum(per_cpu.iter());
            return Ok((total.packets > 0).then(|| counters::dated_late(total)));
        }
        let counters: PerCpuHashMap<&MapData, u32, IfaceCounters> =
            map(&self.ebpf, maps::IFACE_COUNTERS)?;
        lookup(&counters, &ifindex, maps::IFACE_COUNTERS)
            .map(|v| v.map(|c| counters::dated_late(IfaceRx::sum(&c))))
    }

    /// TCP data segments sent through `ifindex` since the counter was attached; `None`
    /// before the first.
    pub fn iface_tx(&self, ifindex: u32) -> Result<Option<IfaceTx>, EbpfError> {
        let counters: PerCpuHashMap<&MapData, u32, TxCounters> = map(&self.ebpf, maps::IFACE_TX)?;
        lookup(&counters, &ifindex, maps::IFACE_TX).map(|v| v.map(|c| IfaceTx::sum(&c)))
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

    /// Makes the programs count traffic with these peers (the configured endpoints),
    /// replacing any earlier set and keeping the counts of peers still wanted. At most
    /// `MAX_WATCHED_PEERS`; extra ones are ignored.
    pub fn watch_peers(&mut self, peers: &[IpAddr]) -> Result<(), EbpfError> {
        let map_error = |source| EbpfError::Map {
            map: maps::WATCHED_PEERS,
            source,
        };
        let cpus =
            aya::util::nr_cpus().map_err(|(_, e)| map_error(aya::maps::MapError::IoError(e)))?;
        let wanted: Vec<DestKey> = peers
            .iter()
            .take(MAX_WATCHED_PEERS as usize)
            .map(|addr| counters::dest_key(*addr))
            .collect();
        {
            let raw = self
                .ebpf
                .map_mut(maps::WATCHED_PEERS)
                .ok_or(EbpfError::Missing(maps::WATCHED_PEERS))?;
            let mut watched =
                PerCpuHashMap::<_, DestKey, PeerCounters>::try_from(raw).map_err(map_error)?;
            let stale: Vec<DestKey> = watched
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !wanted.contains(k))
                .collect();
            for key in stale {
                watched.remove(&key).map_err(map_error)?;
            }
            for key in &wanted {
                if watched.get(key, 0).is_err() {
                    let zeros = PerCpuValues::try_from(vec![PeerCounters::default(); cpus])
                        .map_err(|e| map_error(aya::maps::MapError::IoError(e)))?;
                    watched.insert(key, zeros, 0).map_err(map_error)?;
                }
            }
        }
        let raw = self
            .ebpf
            .map_mut(maps::WATCH_COUNT)
            .ok_or(EbpfError::Missing(maps::WATCH_COUNT))?;
        let mut count = Array::<_, u32>::try_from(raw).map_err(|source| EbpfError::Map {
            map: maps::WATCH_COUNT,
            source,
        })?;
        count
            .set(0, wanted.len() as u32, 0)
            .map_err(|source| EbpfError::Map {
                map: maps::WATCH_COUNT,
                source,
            })?;
        Ok(())
    }

    /// What the programs saw of a watched peer; `None` if it is not watched.
    pub fn peer_stats(&self, addr: IpAddr) -> Result<Option<PeerStats>, EbpfError> {
        let watched: PerCpuHashMap<&MapData, DestKey, PeerCounters> =
            map(&self.ebpf, maps::WATCHED_PEERS)?;
        lookup(&watched, &counters::dest_key(addr), maps::WATCHED_PEERS)
            .map(|v| v.map(|c| PeerStats::sum(&c)))
    }
}

/// One key's per-CPU values; `None` if the key is absent.
fn lookup<K: aya::Pod, V: aya::Pod>(
    map: &PerCpuHashMap<&MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<Option<Vec<V>>, EbpfError> {
    match map.get(key, 0) {
        Ok(per_cpu) => Ok(Some(per_cpu.iter().copied().collect())),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(EbpfError::Map { map: name, source }),
    }
}
