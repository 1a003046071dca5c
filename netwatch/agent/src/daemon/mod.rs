//! The privileged host agent: loads the kernel programs, follows rtnetlink, keeps its
//! counters on every interface, turns what it sees into verdicts, and leaves nothing behind
//! when it stops.
//!
//! One task owns everything, so the data flows one way without locks: kernel and netlink
//! events update the tracker, the tracker's observations go through the classifier, and the
//! resulting state is published to every consumer through a watch channel. Each `select!`
//! branch only waits on something cancel-safe (a channel, a timer); the work it triggers
//! (a full re-read after an overrun included) runs in the branch's body, which nothing
//! interrupts.

mod address;
mod attach;
mod costs;
mod evidence;
mod fast_path;
mod logging;
mod notify;
mod privileges;
mod probe;
mod report;
mod resolver;
mod sandbox;
mod selection;
mod serving;
mod tracker;
mod view;

use std::{
    net::SocketAddr,
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};
use tracing::{info, warn};

use crate::{
    ebpf::{monotonic_ns, EbpfError, KernelPrograms, RxHook},
    metrics::{self, AgentCosts},
    netlink::{NetlinkError, NetlinkWatcher},
    server::{self, Demand, ServerOptions},
    state::{NetworkState, StateWatch, Thresholds},
};
pub use address::{AddressError, EndpointAddress};
pub use privileges::{drop_thread_capabilities, RunAs};
pub use probe::ProbeSpec;
pub use selection::{InterfaceSelection, PatternError, DEFAULT_EXCLUDE};
pub use tracker::EndpointSpec;
use view::Agent;

/// How often verdicts are re-judged when nothing else prompts it (windows move on).
const CLASSIFY_EVERY: Duration = Duration::from_millis(500);

/// The agent's settings, resolved once from flags, the config file and defaults.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The kernel programs' object (the `netwatch` binary embeds it: `KERNEL_PROGRAMS`).
    pub kernel_programs: &'static [u8],
    /// How often to log one line per interface; `None` turns it off.
    pub report_interval: Option<Duration>,
    /// Where the receive counter runs on each watched interface.
    pub rx_hook: RxHook,
    /// Whether to tell a service manager at `$NOTIFY_SOCKET` when ready (`notify.rs`): the
    /// `netwatch agent` command does; a program that embeds the agent keeps the variable.
    pub notify_manager: bool,
    /// Which interfaces are watched (`selection.rs`).
    pub interfaces: InterfaceSelection,
    /// Receive buffer of the netlink event socket, in bytes.
    pub event_buffer: usize,
    pub thresholds: Thresholds,
    /// Whether the agent may ask the kernel to re-validate a neighbour when a client waits
    /// on an Unknown subject or the host's traffic goes unanswered (docs/verdict.md).
    pub evidence_on_demand: bool,
    /// Endpoints to judge, each with its probe if probing is on.
    pub endpoints: Vec<(EndpointSpec, Option<ProbeSpec>)>,
    /// The user to become once everything is attached; `None` stays who started it (root
    /// only by choice: `[agent] user = "root"`).
    pub run_as: Option<RunAs>,
    /// The Unix socket clients ask through; `None` serves none.
    pub socket: Option<ServerOptions>,
    /// Where to serve Prometheus metrics; `None` serves none.
    pub metrics: Option<MetricsListen>,
    /// Whether to turn on the kernel's run-time accounting of BPF programs (host-wide).
    pub program_costs: bool,
}

/// A metrics address, and whether failing to bind it is fatal (it is when a user chose it;
/// the built-in default is best-effort, e.g. in a namespace whose loopback is down).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsListen {
    pub addr: SocketAddr,
    pub required: bool,
    /// TLS and basic auth ([`metrics::WebConfig::check_exposure`] passed for `addr`).
    pub web: Option<Arc<metrics::WebConfig>>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            kernel_programs: &[],
            report_interval: Some(Duration::from_secs(5)),
            rx_hook: RxHook::default(),
            notify_manager: false,
            interfaces: InterfaceSelection::default(),
            event_buffer: crate::netlink::DEFAULT_EVENT_BUFFER,
            thresholds: Thresholds::default(),
            evidence_on_demand: true,
            endpoints: Vec::new(),
            run_as: None,
            socket: None,
            metrics: None,
            program_costs: false,
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
    #[error("reaching the service manager at $NOTIFY_SOCKET failed: {0}")]
    Notify(#[source] std::io::Error),
    #[error(transparent)]
    Socket(#[from] crate::server::ServerError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("starting the thread that serves clients failed: {0}")]
    Serving(#[source] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("giving up root's privileges failed (set [agent] user = \"root\" to run as root on purpose): {0}")]
    Privileges(#[from] privileges::PrivilegeError),
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
    let manager = match config.notify_manager {
        true => notify::Notifier::from_env().map_err(AgentError::Notify)?,
        false => notify::Notifier::none(),
    };
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    // Listeners first: a second agent or a busy port fails before anything is loaded, and
    // the socket's directory and owner need privileges dropped later.
    let socket = match &config.socket {
        Some(options) => Some(server::bind(options).await?),
        None => None,
    };
    let metrics_listener = bind_metrics(config.metrics.clone()).await?;
    let bpf_stats = config.program_costs.then(enable_bpf_stats).flatten();

    let mut probes = KernelPrograms::load(config.kernel_programs)?;
    let ids = probes.program_ids();
    info!(
        retransmit_prog_id = ids.retransmit,
        reset_prog_id = ids.reset,
        sock_state_prog_id = ids.sock_state,
        "tracepoints attached"
    );
    let mut kernel_events = probes
        .take_events()?
        .ok_or(EbpfError::Missing("EVENTS ring buffer"))?;
    let (mut watcher, snapshot) = NetlinkWatcher::start(config.event_buffer).await?;
    let (probe_results, mut probe_inbox) = mpsc::channel(64);
    let (resolutions, mut resolved_inbox) = mpsc::channel(64);
    let mut addresses = Vec::new();
    let mut names = Vec::new();
    for (endpoint, probe) in &config.endpoints {
        let known = match &endpoint.address {
            EndpointAddress::Ip(addr) => Some(*addr),
            EndpointAddress::Host { host, port } => {
                names.push((endpoint.name.clone(), host.clone(), *port));
                None
            }
        };
        let (address, receiver) = watch::channel(known);
        if let Some(spec) = probe {
            probe::spawn(
                endpoint.name.clone(),
                receiver,
                spec.clone(),
                probe_results.clone(),
            );
        }
        addresses.push((endpoint.name.clone(), address));
    }
    let (demand, mut demand_inbox) = if config.evidence_on_demand {
        Demand::channel()
    } else {
        let (_, receiver) = mpsc::channel(1);
        (Demand::none(), receiver)
    };
    let mut agent = Agent::new(&config, publish);
    agent.apply_snapshot(&mut probes, snapshot, false, monotonic_ns());
    agent.watch_peers(&mut probes);
    // Loading parsed the kernel's BTF (megabytes, freed since); glibc keeps freed heap for
    // reuse unless told, and the agent never needs that much again.
    // SAFETY: malloc_trim has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };

    let dropped = privileges::drop_privileges(config.run_as.as_ref())?;
    info!(
        user = dropped
            .user
            .as_ref()
            .map_or("unchanged", |u| u.name.as_str()),
        uid = dropped.user.as_ref().map(|u| u.uid),
        capabilities_dropped = dropped.capabilities.len(),
        kept = "CAP_BPF CAP_NET_ADMIN",
        "privileges dropped"
    );
    match sandbox::install()? {
        true => info!("seccomp filter installed: only the system calls the agent uses are allowed"),
        false => warn!(
            arch = std::env::consts::ARCH,
            "no seccomp filter for this architecture"
        ),
    }
    // Only now: the look-ups run on threads of their own, which must not start as root.
    for (name, host, port) in names {
        resolver::spawn(name, host, port, resolutions.clone());
    }
    agent.classify(&mut probes, &watcher).await;
    let state = StateWatch::new(agent.subscribe());
    let serves_metrics = metrics_listener.is_some();
    let (costs, costs_receiver) = watch::channel(Arc::new(AgentCosts::default()));
    serving::spawn(socket, metrics_listener, state, demand, costs_receiver)
        .map_err(AgentError::Serving)?;
    let costs = serves_metrics.then_some(costs);
    info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        links = agent.link_count(),
        rx_counters_attached = agent.rx_counters_attached(),
        "agent ready"
    );
    manager.send(&format!(
        "READY=1\nSTATUS=watching {} links, {} with a receive counter",
        agent.link_count(),
        agent.rx_counters_attached()
    ));

    let mut report_tick = config.report_interval.map(|every| ticker(every, every));
    let mut classify_tick = ticker(CLASSIFY_EVERY, CLASSIFY_EVERY);
    let mut poll_tick: Option<tokio::time::Interval> = None;
    let mut signals = Vec::new();
    let stopped_by = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            event = watcher.next() => {
                let Some(event) = event else {
                    warn!("the netlink event socket closed; stopping");
                    break "netlink closed";
                };
                agent.netlink_batch(&mut probes, &mut watcher, event).await;
                agent.classify(&mut probes, &watcher).await;
            }
            result = kernel_events.next_batch(&mut signals) => {
                if let Err(e) = result {
                    warn!(error = %e, "reading kernel events failed");
                }
                agent.kernel_signals(&mut probes, &watcher, &signals).await;
                signals.clear();
                agent.classify(&mut probes, &watcher).await;
            }
            Some((endpoint, result)) = probe_inbox.recv() => {
                agent.set_probe(&endpoint, result);
                agent.classify(&mut probes, &watcher).await;
            }
            Some((endpoint, resolved)) = resolved_inbox.recv() => {
                if let Some(address) = agent.set_resolved(&mut probes, &endpoint, resolved) {
                    if let Some((_, sender)) = addresses.iter().find(|(name, _)| *name == endpoint) {
                        sender.send_replace(Some(address));
                    }
                }
                agent.classify(&mut probes, &watcher).await;
            }
            Some(subject) = demand_inbox.recv() => {
                agent.on_demand(&subject, &watcher).await;
            }
            _ = classify_tick.tick() => {
                agent.refresh(&mut probes, &watcher).await;
                agent.classify(&mut probes, &watcher).await;
                agent.on_silence(&watcher).await;
                if let Some(costs) = &costs {
                    costs.send_replace(Arc::new(agent.costs(&probes, bpf_stats.is_some(), &watcher)));
                }
            }
            _ = tick(&mut poll_tick) => {
                if !agent.poll_reception(&mut probes, &watcher).await {
                    poll_tick = None;
                }
            }
            _ = tick(&mut report_tick) => agent.report(&probes),
        }
        if poll_tick.is_none() && agent.wants_polling() {
            poll_tick = Some(ticker(
                Duration::ZERO,
                Duration::from_millis(fast_path::POLL_MS),
            ));
        }
    };
    manager.send("STOPPING=1");
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
) -> Result<Option<(tokio::net::TcpListener, metrics::Access)>, AgentError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    match metrics::bind(listen.addr).await {
        Ok(listener) => {
            let web = listen.web.as_deref();
            // Bound in the watched namespace: with --netns, its loopback, not the host's.
            info!(
                address = %listen.addr,
                netns = netns_name().as_deref().unwrap_or("the agent's own"),
                tls = web.is_some_and(|web| web.tls.is_some()),
                basic_auth = web.is_some_and(|web| !web.users.is_empty()),
                client_certificates = web.is_some_and(|web| web.client_certificates),
                "serving metrics"
            );
            Ok(Some((listener, metrics::Access::new(web))))
        }
        Err(e) if !listen.required => {
            warn!(error = %e, "metrics not served (the default address is best-effort; set [metrics] listen to require it)");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The network namespace the agent runs in, by its `ip netns` name if it has one.
fn netns_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
    std::fs::read_dir("/run/netns")
        .ok()?
        .flatten()
        .find(|entry| entry.metadata().is_ok_and(|m| m.ino() == own))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
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
