//! The privileged host agent: loads the kernel programs, follows rtnetlink, keeps XDP on
//! every interface, reports, and leaves nothing behind when it stops.

mod privileges;
mod report;
mod xdp;

use std::{collections::HashMap, time::Duration, time::Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};

use crate::{
    ebpf::{EbpfError, Probes, TcpSignal, XdpMode},
    netlink::{up_down, Link, NetEvent, NetlinkError, NetlinkWatcher, Snapshot},
};
use report::Reporter;
use xdp::XdpAttacher;

/// The agent's settings, resolved from flags and defaults.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// How often to log one line per interface; `None` turns it off.
    pub report_interval: Option<Duration>,
    pub xdp_mode: XdpMode,
    /// Receive buffer of the netlink event socket, in bytes.
    pub event_buffer: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            report_interval: Some(Duration::from_secs(5)),
            xdp_mode: XdpMode::Generic,
            event_buffer: crate::netlink::DEFAULT_EVENT_BUFFER,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("installing signal handlers failed: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs until SIGINT or SIGTERM. `started` is when the process started, for the start-up
/// time it logs. Needs a tokio runtime in the namespace to watch.
pub async fn run(config: AgentConfig, started: Instant) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;

    let mut probes = Probes::load()?;
    let ids = probes.program_ids();
    info!(
        retransmit_prog_id = ids.retransmit,
        reset_prog_id = ids.reset,
        sock_state_prog_id = ids.sock_state,
        "tracepoints attached"
    );
    let mut tcp_events = probes
        .take_events()?
        .ok_or(EbpfError::Missing("EVENTS ring buffer"))?;
    let (mut watcher, snapshot) = NetlinkWatcher::start(config.event_buffer).await?;
    let mut agent = Agent {
        links: HashMap::new(),
        xdp: XdpAttacher::new(config.xdp_mode),
        reporter: Reporter::new(),
    };
    agent.apply_snapshot(&mut probes, snapshot, false);

    match privileges::drop_unneeded() {
        Ok(dropped) => debug!(count = dropped.len(), "capabilities dropped"),
        Err(e) => warn!(error = %e, "could not drop capabilities; running with all of them"),
    }
    info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        links = agent.links.len(),
        xdp_attached = agent.xdp.attached_count(),
        "agent ready"
    );

    let mut report_tick = config.report_interval.map(|every| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let mut signals = Vec::new();
    let stopped_by = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            event = watcher.next() => match event {
                Some(Ok(event)) => agent.handle(&mut probes, event, watcher.overruns()),
                Some(Err(e)) => warn!(error = %e, "re-reading network state after an overrun failed; will retry on the next overrun"),
                None => {
                    warn!("the netlink event socket closed; stopping");
                    break "netlink closed";
                }
            },
            result = tcp_events.next_batch(&mut signals) => {
                if let Err(e) = result {
                    warn!(error = %e, "reading TCP events failed");
                }
                log_signals(signals.drain(..));
            }
            _ = tick(&mut report_tick) => agent.reporter.report(&probes, &watcher).await,
        }
    };
    // Dropping the programs closes their links: the kernel detaches them.
    drop(tcp_events);
    drop(probes);
    info!(signal = stopped_by, "agent stopped");
    Ok(())
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn log_signals(signals: impl Iterator<Item = TcpSignal>) {
    for signal in signals {
        debug!(kind = ?signal.kind, local = %signal.local, remote = %signal.remote, "tcp signal");
    }
}

/// The agent's view of the interfaces and what it did about each.
struct Agent {
    links: HashMap<u32, Link>,
    xdp: XdpAttacher,
    reporter: Reporter,
}

impl Agent {
    fn handle(&mut self, probes: &mut Probes, event: NetEvent, overruns: u64) {
        match event {
            NetEvent::LinkUpdated(link) => self.link_updated(probes, link),
            NetEvent::LinkRemoved(link) => self.link_removed(probes, link.ifindex),
            NetEvent::AddressAdded(a) => {
                info!(ifindex = a.ifindex, address = %a.addr, prefix_len = a.prefix_len, "address added")
            }
            NetEvent::AddressRemoved(a) => {
                info!(ifindex = a.ifindex, address = %a.addr, prefix_len = a.prefix_len, "address removed")
            }
            NetEvent::RouteAdded(route) | NetEvent::RouteRemoved(route) => {
                self.reporter.routes_changed();
                if route.is_default() && route.in_main_table() {
                    info!(gateway = ?route.gateway, oifs = ?route.oifs, ipv6 = route.ipv6, "default route changed");
                }
            }
            NetEvent::NeighbourUpdated(_) | NetEvent::NeighbourRemoved(_) => {}
            NetEvent::Resynced(snapshot) => {
                warn!(
                    overruns,
                    "netlink overrun: events were lost, the full state was re-read"
                );
                self.reporter.routes_changed();
                self.apply_snapshot(probes, snapshot, true);
            }
        }
    }

    fn link_updated(&mut self, probes: &mut Probes, link: Link) {
        match self.links.get(&link.ifindex) {
            None => info!(
                ifindex = link.ifindex,
                ifname = %link.name,
                admin = up_down(link.admin_up),
                carrier = up_down(link.carrier),
                oper = %link.oper,
                mtu = link.mtu,
                mac = %link.mac.map(|m| m.to_string()).unwrap_or_default(),
                "link added"
            ),
            Some(before) if link.state_differs(before) => info!(
                ifindex = link.ifindex,
                ifname = %link.name,
                admin = up_down(link.admin_up),
                carrier = up_down(link.carrier),
                oper = %link.oper,
                carrier_changes = link.carrier_changes,
                "link changed"
            ),
            Some(_) => {}
        }
        self.xdp.consider(probes, &link);
        self.links.insert(link.ifindex, link);
    }

    fn link_removed(&mut self, probes: &mut Probes, ifindex: u32) {
        if let Some(link) = self.links.remove(&ifindex) {
            info!(ifindex, ifname = %link.name, "link removed");
        }
        self.xdp.forget(probes, ifindex);
    }

    /// Brings the view in line with a full dump: links that vanished are removed, the rest
    /// go through the same path as events (so changes missed during an overrun are logged).
    fn apply_snapshot(&mut self, probes: &mut Probes, snapshot: Snapshot, announce_removals: bool) {
        let present: std::collections::HashSet<u32> =
            snapshot.links.iter().map(|l| l.ifindex).collect();
        let gone: Vec<u32> = self
            .links
            .keys()
            .copied()
            .filter(|i| !present.contains(i))
            .collect();
        for ifindex in gone {
            if announce_removals {
                self.link_removed(probes, ifindex);
            }
        }
        for link in snapshot.links {
            self.link_updated(probes, link);
        }
    }
}
