//! The privileged host agent: loads the kernel programs, follows rtnetlink, keeps XDP on
//! every interface, turns what it sees into verdicts, and leaves nothing behind when it stops.
//!
//! One task owns everything, so the data flows one way without locks: kernel and netlink
//! events update the tracker, the tracker's observations go through the classifier, and the
//! resulting state is published to every consumer through a watch channel.

mod costs;
mod fast_path;
mod logging;
mod privileges;
mod probe;
mod report;
mod tracker;
mod xdp;

use std::{
    collections::HashSet,
    net::SocketAddr,
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use crate::{
    ebpf::{monotonic_ns, EbpfError, KernelSignal, Probes, XdpMode},
    metrics::{self, AgentCosts},
    netlink::{NetEvent, NetlinkError, NetlinkWatcher, Snapshot},
    server::{self, ServerOptions},
    state::{Classifier, NetworkState, StateWatch, Thresholds},
};
use fast_path::FastPath;
pub use probe::ProbeSpec;
use report::Reporter;
pub use tracker::EndpointSpec;
use tracker::Tracker;
use xdp::XdpAttacher;

/// How often verdicts are re-judged when nothing else prompts it (windows move on).
const CLASSIFY_EVERY: Duration = Duration::from_millis(500);

/// The agent's settings, resolved once from flags, the config file and defaults.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// How often to log one line per interface; `None` turns it off.
    pub report_interval: Option<Duration>,
    pub xdp_mode: XdpMode,
    /// Receive buffer of the netlink event socket, in bytes.
    pub event_buffer: usize,
    pub thresholds: Thresholds,
    /// Endpoints to judge, each with its probe if probing is on.
    pub endpoints: Vec<(EndpointSpec, Option<ProbeSpec>)>,
    /// The Unix socket clients ask through; `None` serves none.
    pub socket: Option<ServerOptions>,
    /// Where to serve Prometheus metrics; `None` serves none.
    pub metrics: Option<MetricsListen>,
}

/// A metrics address, and whether failing to bind it is fatal (it is when a user chose it;
/// the built-in default is best-effort, e.g. in a namespace whose loopback is down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsListen {
    pub addr: SocketAddr,
    pub required: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            report_interval: Some(Duration::from_secs(5)),
            xdp_mode: XdpMode::Generic,
            event_buffer: crate::netlink::DEFAULT_EVENT_BUFFER,
            thresholds: Thresholds::default(),
            endpoints: Vec::new(),
            socket: None,
            metrics: None,
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
    #[error(transparent)]
    Socket(#[from] crate::server::ServerError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// Runs until SIGINT or SIGTERM, publishing every new state to `publish`. `started` is when
/// the process started, for the start-up time it logs. Needs a tokio runtime in the network
/// namespace to watch.
pub async fn run(
    config: AgentConfig,
    started: Instant,
    publish: watch::Sender<Arc<NetworkState>>,
) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    // Listeners first: a second agent or a busy port fails before anything is loaded, and
    // the socket's directory and owner need privileges dropped later.
    let socket = match &config.socket {
        Some(options) => Some(server::bind(options).await?),
        None => None,
    };
    let metrics_listener = bind_metrics(config.metrics).await?;
    let bpf_stats = enable_bpf_stats();

    let mut probes = Probes::load()?;
    let ids = probes.program_ids();
    info!(
        retransmit_prog_id = ids.retransmit,
        reset_prog_id = ids.reset,
        sock_state_prog_id = ids.sock_state,
        "tracepoints attached"
    );
    let sources: Vec<_> = config
        .endpoints
        .iter()
        .map(|(e, _)| e.address.ip())
        .collect();
    probes.watch_sources(&sources)?;
    let mut kernel_events = probes
        .take_events()?
        .ok_or(EbpfError::Missing("EVENTS ring buffer"))?;
    let (mut watcher, snapshot) = NetlinkWatcher::start(config.event_buffer).await?;
    let (probe_results, mut probe_inbox) = mpsc::channel(64);
    for (endpoint, probe) in &config.endpoints {
        if let Some(spec) = probe {
            probe::spawn(
                endpoint.name.clone(),
                endpoint.address,
                spec.clone(),
                probe_results.clone(),
            );
        }
    }
    let mut agent = Agent {
        tracker: Tracker::new(config.endpoints.iter().map(|(e, _)| e.clone()).collect()),
        xdp: XdpAttacher::new(config.xdp_mode),
        reporter: Reporter::new(),
        classifier: Classifier::new(config.thresholds.clone()),
        fast: FastPath::default(),
        wants_polling: false,
        events_received: 0,
        publish,
    };
    agent.apply_snapshot(&mut probes, snapshot, false);

    match privileges::drop_unneeded() {
        Ok(dropped) => debug!(count = dropped.len(), "capabilities dropped"),
        Err(e) => warn!(error = %e, "could not drop capabilities; running with all of them"),
    }
    agent.classify(&probes, &watcher).await;
    let state = StateWatch::new(agent.publish.subscribe());
    if let Some(listener) = socket {
        tokio::spawn(server::serve(listener, state.clone()));
    }
    let costs = metrics_listener.map(|listener| {
        let (costs, receiver) = watch::channel(Arc::new(AgentCosts::default()));
        tokio::spawn(metrics::serve(listener, state.clone(), receiver));
        costs
    });
    info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        links = agent.tracker.links.len(),
        xdp_attached = agent.xdp.attached_count(),
        "agent ready"
    );

    let mut report_tick = config.report_interval.map(|every| ticker(every, every));
    let mut classify_tick = ticker(CLASSIFY_EVERY, CLASSIFY_EVERY);
    let mut poll_tick: Option<tokio::time::Interval> = None;
    let mut signals = Vec::new();
    let stopped_by = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            event = watcher.next() => match event {
                Some(Ok(event)) => {
                    agent.handle(&mut probes, event, watcher.overruns());
                    agent.classify(&probes, &watcher).await;
                }
                Some(Err(e)) => warn!(error = %e, "re-reading network state after an overrun failed; will retry on the next overrun"),
                None => {
                    warn!("the netlink event socket closed; stopping");
                    break "netlink closed";
                }
            },
            result = kernel_events.next_batch(&mut signals) => {
                if let Err(e) = result {
                    warn!(error = %e, "reading kernel events failed");
                }
                agent.events_received += signals.len() as u64;
                agent.kernel_signals(&mut probes, &watcher, &signals).await;
                signals.clear();
                agent.classify(&probes, &watcher).await;
            }
            Some((endpoint, result)) = probe_inbox.recv() => {
                agent.tracker.set_probe(&endpoint, result);
                agent.classify(&probes, &watcher).await;
            }
            _ = classify_tick.tick() => {
                agent.refresh_links(&mut probes, &watcher).await;
                agent.classify(&probes, &watcher).await;
                if let Some(costs) = &costs {
                    let gathered = costs::gather(&probes, bpf_stats.is_some(), watcher.overruns(), agent.fast.asked, agent.events_received);
                    costs.send_replace(Arc::new(gathered));
                }
            }
            _ = tick(&mut poll_tick) => {
                if !agent.poll_reception(&mut probes, &watcher).await {
                    poll_tick = None;
                }
            }
            _ = tick(&mut report_tick) => agent.reporter.report(&probes, &agent.tracker),
        }
        if poll_tick.is_none() && agent.wants_polling {
            poll_tick = Some(ticker(
                Duration::ZERO,
                Duration::from_millis(fast_path::POLL_MS),
            ));
        }
    };
    // Dropping the programs closes their links: the kernel detaches them.
    drop(kernel_events);
    drop(probes);
    if let Some(options) = &config.socket {
        // Clients then get "not running" at once instead of a refused connection.
        let _ = std::fs::remove_file(&options.path);
    }
    info!(signal = stopped_by, "agent stopped");
    Ok(())
}

/// Starts the agent on a runtime thread of its own and returns its state: the in-process
/// monitor for programs that run as root themselves. Stops when the process does.
pub fn spawn(config: AgentConfig) -> (StateWatch, tokio::task::JoinHandle<Result<(), AgentError>>) {
    let (publish, watch) = StateWatch::channel(NetworkState::initial(monotonic_ns()));
    let task = tokio::spawn(run(config, Instant::now(), publish));
    (watch, task)
}

async fn bind_metrics(
    listen: Option<MetricsListen>,
) -> Result<Option<tokio::net::TcpListener>, AgentError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    match metrics::bind(listen.addr).await {
        Ok(listener) => {
            info!(address = %listen.addr, "serving metrics");
            Ok(Some(listener))
        }
        Err(e) if !listen.required => {
            warn!(error = %e, "metrics not served (the default address is best-effort; set [metrics] listen to require it)");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the kernel account each program's run time while the agent runs (BPF_ENABLE_STATS),
/// unless `kernel.bpf_stats_enabled` already does.
fn enable_bpf_stats() -> Option<OwnedFd> {
    match crate::ebpf::enable_run_time_stats() {
        Ok(fd) => Some(fd),
        Err(e) => {
            warn!(error = %e, "eBPF run-time accounting unavailable: program costs will read 0");
            None
        }
    }
}

fn ticker(first_after: Duration, every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_after, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The agent's view of the network and what it did about it.
struct Agent {
    tracker: Tracker,
    xdp: XdpAttacher,
    reporter: Reporter,
    classifier: Classifier,
    fast: FastPath,
    /// Set by the classifier when a link is receiving: reception polling should run.
    wants_polling: bool,
    /// Kernel events read from the ring buffer.
    events_received: u64,
    publish: watch::Sender<Arc<NetworkState>>,
}

impl Agent {
    fn handle(&mut self, probes: &mut Probes, event: NetEvent, overruns: u64) {
        match &event {
            NetEvent::LinkUpdated(link) => {
                logging::link_updated(self.tracker.links.get(&link.ifindex), link);
                self.xdp.consider(probes, link);
            }
            NetEvent::LinkRemoved(link) => {
                logging::link_removed(link);
                self.xdp.forget(probes, link.ifindex);
            }
            NetEvent::AddressAdded(a) => logging::address(a, true),
            NetEvent::AddressRemoved(a) => logging::address(a, false),
            NetEvent::RouteAdded(route) | NetEvent::RouteRemoved(route) => {
                logging::route(route);
            }
            NetEvent::NeighbourUpdated(n) => {
                debug!(ifindex = n.ifindex, addr = %n.addr, state = %n.state, "neighbour")
            }
            NetEvent::NeighbourRemoved(_) => {}
            NetEvent::Resynced(snapshot) => {
                warn!(
                    overruns,
                    "netlink overrun: events were lost, the full state was re-read"
                );
                return self.apply_snapshot(probes, snapshot.clone(), true);
            }
        }
        self.tracker.apply(&event);
    }

    /// Brings the view in line with a full dump: links that vanished are removed, the rest
    /// go through the same path as events (so changes missed during an overrun are logged).
    fn apply_snapshot(&mut self, probes: &mut Probes, snapshot: Snapshot, announce_removals: bool) {
        let gone: Vec<_> = self
            .tracker
            .links
            .values()
            .filter(|l| !snapshot.links.iter().any(|s| s.ifindex == l.ifindex))
            .cloned()
            .collect();
        for link in gone {
            if announce_removals {
                logging::link_removed(&link);
            }
            self.xdp.forget(probes, link.ifindex);
        }
        for link in &snapshot.links {
            logging::link_updated(self.tracker.links.get(&link.ifindex), link);
            self.xdp.consider(probes, link);
        }
        self.tracker.load(&snapshot);
    }

    /// Re-reads every link for fresh counters (the verdict's ratios need transmit counts).
    async fn refresh_links(&mut self, probes: &mut Probes, watcher: &NetlinkWatcher) {
        match watcher.links().await {
            Ok(links) => {
                for link in links {
                    self.handle(probes, NetEvent::LinkUpdated(link), watcher.overruns());
                }
            }
            Err(e) => warn!(error = %e, "reading link counters failed"),
        }
    }

    /// Asks the kernel about one link now (the fast path), and takes the answer as an event.
    async fn ask_about(&mut self, probes: &mut Probes, watcher: &NetlinkWatcher, ifindex: u32) {
        match watcher.link(ifindex).await {
            Ok(Some(link)) => self.handle(probes, NetEvent::LinkUpdated(link), watcher.overruns()),
            Ok(None) => {}
            Err(e) => debug!(ifindex, error = %e, "asking the kernel about a link failed"),
        }
    }

    /// Polls reception while links are active; returns whether polling should go on.
    async fn poll_reception(&mut self, probes: &mut Probes, watcher: &NetlinkWatcher) -> bool {
        let now = monotonic_ns();
        let ifindexes: Vec<u32> = self.tracker.links.keys().copied().collect();
        let quiet = self.fast.quiet_links(probes, ifindexes.into_iter(), now);
        for ifindex in &quiet {
            debug!(
                ifindex,
                "reception stopped: asking the kernel about the link"
            );
            self.ask_about(probes, watcher, *ifindex).await;
        }
        if !quiet.is_empty() {
            self.classify(probes, watcher).await;
        }
        let active = self.fast.active(now);
        self.wants_polling = active;
        active
    }

    /// A link receiving again: watch its pace. Retransmits, resets or failed connects: ask
    /// about the links they were routed through.
    async fn kernel_signals(
        &mut self,
        probes: &mut Probes,
        watcher: &NetlinkWatcher,
        signals: &[KernelSignal],
    ) {
        let now = monotonic_ns();
        let mut asked = HashSet::new();
        for signal in signals {
            let tcp = match signal {
                KernelSignal::RxResumed { ifindex, .. } => {
                    debug!(ifindex, "reception resumed: watching its pace");
                    self.wants_polling = true;
                    continue;
                }
                KernelSignal::Tcp(tcp) => tcp,
            };
            debug!(kind = ?tcp.kind, local = %tcp.local, remote = %tcp.remote, "tcp signal");
            if let Some(oif) = self.tracker.route_to(watcher, tcp.remote_ip()).await {
                if !asked.contains(&oif) && self.fast.on_tcp_trouble(oif, now) {
                    asked.insert(oif);
                    self.ask_about(probes, watcher, oif).await;
                }
            }
        }
    }

    /// Judges the current observations and publishes the state, logging verdict changes.
    async fn classify(&mut self, probes: &Probes, watcher: &NetlinkWatcher) {
        let observations = self.tracker.observe(probes, watcher).await;
        let now = monotonic_ns();
        self.wants_polling = FastPath::wanted(&observations, now);
        let state = self.classifier.classify(&observations, now);
        let before = self.publish.borrow().clone();
        logging::verdict_changes(&before, &state);
        self.publish.send_replace(Arc::new(state));
    }
}
