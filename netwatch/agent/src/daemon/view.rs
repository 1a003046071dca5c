//! The agent's view of the network and what it does about each thing it hears: netlink
//! events (in batches, with a full re-read after an overrun), kernel signals, probe results,
//! resolved names, clients waiting on evidence. Everything ends in one judgement, published.

use std::{collections::HashSet, net::SocketAddr, sync::Arc};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::{
    attach::CounterAttacher,
    costs,
    evidence::Revalidator,
    fast_path::FastPath,
    logging,
    report::Reporter,
    tracker::{OutageRule, Resolved, Tracker},
    AgentConfig,
};
use crate::{
    ebpf::{monotonic_ns, KernelPrograms, KernelSignal},
    metrics::AgentCosts,
    netlink::{Link, NetEvent, NetlinkWatcher, Snapshot},
    state::{Classifier, Health, NetworkState, ProbeResult, Subject},
};

/// Most netlink events handled before judging once: a storm of link changes is judged in
/// batches, not once per event, and the agent still answers in between.
const MAX_BATCH: usize = 1024;

pub struct Agent {
    tracker: Tracker,
    counters: CounterAttacher,
    reporter: Reporter,
    classifier: Classifier,
    fast: FastPath,
    revalidator: Revalidator,
    /// A full re-read is owed: an overrun's re-read failed, and is tried again each tick.
    resync_owed: bool,
    /// Set by the classifier when a link is receiving: reception polling should run.
    wants_polling: bool,
    /// Kernel events read from the ring buffer.
    events_received: u64,
    publish: watch::Sender<Arc<NetworkState>>,
}

impl Agent {
    pub fn new(config: &AgentConfig, publish: watch::Sender<Arc<NetworkState>>) -> Self {
        let outage = OutageRule {
            recovery_ns: u64::try_from(config.thresholds.loss_window.as_nanos())
                .unwrap_or(u64::MAX),
            timeouts: config.thresholds.blackhole_timeouts,
        };
        Self {
            tracker: Tracker::new(
                config.endpoints.iter().map(|(e, _)| e.clone()).collect(),
                outage,
            )
            .watching(config.interfaces.clone()),
            counters: CounterAttacher::new(config.rx_hook),
            reporter: Reporter::new(),
            classifier: Classifier::new(config.thresholds.clone()),
            fast: FastPath::default(),
            revalidator: Revalidator::new(config.evidence_on_demand),
            resync_owed: false,
            wants_polling: false,
            events_received: 0,
            publish,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<NetworkState>> {
        self.publish.subscribe()
    }

    pub fn link_count(&self) -> usize {
        self.tracker.links.len()
    }

    pub fn rx_counters_attached(&self) -> usize {
        self.counters.attached_count()
    }

    pub fn wants_polling(&self) -> bool {
        self.wants_polling
    }

    /// Handles `first` and every event already queued behind it (up to a batch), re-reading
    /// the whole state on an overrun and the routes when the kernel may have changed them
    /// without a word.
    pub async fn netlink_batch(
        &mut self,
        probes: &mut KernelPrograms,
        watcher: &mut NetlinkWatcher,
        first: NetEvent,
    ) {
        let mut next = Some(first);
        let mut handled = 0;
        let mut overrun = false;
        while let Some(event) = next.take() {
            match event {
                NetEvent::Overrun => overrun = true,
                event => self.handle(probes, event, monotonic_ns()),
            }
            handled += 1;
            // After an overrun, everything queued is drained before the re-read: the kernel
            // reports ENOBUFS ahead of the older messages still in the socket's queue, and one
            // of those replayed after the dump (a link's creation, its deletion lost) would
            // bring back a link that is gone, for good.
            if handled < MAX_BATCH || overrun {
                next = watcher.try_next();
            }
        }
        if overrun {
            // The socket's reader runs on this thread: let it run until it brings nothing
            // more, so the queue is empty in fact and not only in the channel (bounded, so
            // an endless flood of events still gets its re-read and judgements).
            for _ in 0..MAX_BATCH {
                tokio::task::yield_now().await;
                match watcher.try_next() {
                    Some(NetEvent::Overrun) => {}
                    Some(event) => self.handle(probes, event, monotonic_ns()),
                    None => break,
                }
            }
            self.resync(probes, watcher).await;
        }
        self.reread_routes(watcher).await;
    }

    fn handle(&mut self, probes: &mut KernelPrograms, event: NetEvent, now_ns: u64) {
        match &event {
            NetEvent::LinkUpdated(link) => self.link_updated(probes, link),
            NetEvent::LinkRemoved(link) => {
                if self.tracker.watches(link) {
                    logging::link_removed(link);
                }
                self.counters.forget(probes, link.ifindex);
            }
            NetEvent::AddressAdded(a) => logging::address(a, true),
            NetEvent::AddressRemoved(a) => logging::address(a, false),
            NetEvent::RouteAdded(route) | NetEvent::RouteRemoved(route) => {
                logging::route(route);
            }
            NetEvent::NeighbourUpdated(n) => {
                debug!(ifindex = n.ifindex, addr = %n.addr, state = %n.state, "neighbour")
            }
            NetEvent::NeighbourRemoved(_) | NetEvent::Overrun => {}
        }
        self.tracker.apply(&event, now_ns);
    }

    /// Logs a watched link's change and gives it the XDP counter; an unwatched one (a
    /// container's veth) is only followed, quietly.
    fn link_updated(&mut self, probes: &mut KernelPrograms, link: &Link) {
        if self.tracker.watches(link) {
            logging::link_updated(self.tracker.links.get(&link.ifindex), link);
            self.counters.consider(probes, link);
        } else if !self.tracker.links.contains_key(&link.ifindex) {
            // Once, when it appears: every refresh passes every link through here.
            debug!(ifindex = link.ifindex, ifname = %link.name, "link not watched (interface patterns)");
        }
    }

    /// Re-reads everything after events were lost. Runs to the end: nothing cancels it.
    async fn resync(&mut self, probes: &mut KernelPrograms, watcher: &NetlinkWatcher) {
        match watcher.dump().await {
            Ok(snapshot) => {
                warn!(
                    overruns = watcher.overruns(),
                    "netlink overrun: events were lost, the full state was re-read"
                );
                self.apply_snapshot(probes, snapshot, true, monotonic_ns());
                self.resync_owed = false;
            }
            Err(e) => {
                warn!(error = %e, "re-reading network state after an overrun failed; trying again shortly");
                self.resync_owed = true;
            }
        }
    }

    /// Brings the view in line with a full dump: links that vanished are removed and their
    /// programs detached, the rest go through the same path as events (so changes missed
    /// during an overrun are logged).
    pub fn apply_snapshot(
        &mut self,
        probes: &mut KernelPrograms,
        snapshot: Snapshot,
        announce_removals: bool,
        now_ns: u64,
    ) {
        let present: HashSet<u32> = snapshot.links.iter().map(|l| l.ifindex).collect();
        let gone: Vec<_> = self
            .tracker
            .links
            .values()
            .filter(|l| !present.contains(&l.ifindex))
            .cloned()
            .collect();
        for link in gone {
            if announce_removals && self.tracker.watches(&link) {
                logging::link_removed(&link);
            }
            self.counters.forget(probes, link.ifindex);
        }
        for link in &snapshot.links {
            self.link_updated(probes, link);
        }
        self.tracker.load(&snapshot, now_ns);
    }

    /// Re-reads routes (and neighbours, which go with them) if something since the last
    /// read may have changed them without an event.
    async fn reread_routes(&mut self, watcher: &NetlinkWatcher) {
        if !self.tracker.routes_stale() {
            return;
        }
        match (watcher.routes().await, watcher.neighbours().await) {
            (Ok(routes), Ok(neighbours)) => {
                self.tracker.set_routes(routes);
                self.tracker.set_neighbours(&neighbours, monotonic_ns());
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "re-reading routes failed; trying again shortly")
            }
        }
    }

    /// The periodic refresh: link counters (the verdict's ratios need them), a re-read owed
    /// after a failed one, and the neighbour table's confirmation times when some link needs
    /// evidence (the kernel updates them without events).
    pub async fn refresh(&mut self, probes: &mut KernelPrograms, watcher: &NetlinkWatcher) {
        if self.resync_owed {
            self.resync(probes, watcher).await;
        }
        match watcher.links().await {
            Ok(links) => {
                let now = monotonic_ns();
                for link in links {
                    self.handle(probes, NetEvent::LinkUpdated(link), now);
                }
            }
            Err(e) => warn!(error = %e, "reading link counters failed"),
        }
        self.reread_routes(watcher).await;
        if self.needs_evidence() {
            match watcher.neighbours().await {
                Ok(neighbours) => self.tracker.set_neighbours(&neighbours, monotonic_ns()),
                Err(e) => debug!(error = %e, "reading the neighbour table failed"),
            }
        }
    }

    /// Whether some link or the host lacks fresh evidence as last judged.
    fn needs_evidence(&self) -> bool {
        let state = self.publish.borrow();
        state.host.health != Health::Up
            || state
                .links
                .values()
                .any(|l| l.verdict.health != Health::Up && l.carrier)
    }

    /// Asks the kernel about one link now (the fast path), and takes the answer as an event.
    async fn ask_about(
        &mut self,
        probes: &mut KernelPrograms,
        watcher: &NetlinkWatcher,
        ifindex: u32,
    ) {
        match watcher.link(ifindex).await {
            Ok(Some(link)) => self.handle(probes, NetEvent::LinkUpdated(link), monotonic_ns()),
            Ok(None) => {}
            Err(e) => debug!(ifindex, error = %e, "asking the kernel about a link failed"),
        }
        self.reread_routes(watcher).await;
    }

    /// Polls reception while links are active; returns whether polling should go on.
    pub async fn poll_reception(
        &mut self,
        probes: &mut KernelPrograms,
        watcher: &NetlinkWatcher,
    ) -> bool {
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
    pub async fn kernel_signals(
        &mut self,
        probes: &mut KernelPrograms,
        watcher: &NetlinkWatcher,
        signals: &[KernelSignal],
    ) {
        self.events_received += signals.len() as u64;
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
            if let Some(hop) = self.tracker.route_to(watcher, tcp.remote_ip()).await {
                // An unwatched link (a container's bridge) has no verdict to hurry.
                let watched = (self.tracker.links.get(&hop.oif))
                    .is_some_and(|link| self.tracker.watches(link));
                if watched && !asked.contains(&hop.oif) && self.fast.on_tcp_trouble(hop.oif, now) {
                    asked.insert(hop.oif);
                    self.ask_about(probes, watcher, hop.oif).await;
                }
            }
        }
    }

    pub fn set_probe(&mut self, endpoint: &str, result: ProbeResult) {
        self.tracker.set_probe(endpoint, result);
    }

    /// Records an endpoint's resolution; returns its new address when it changed (the
    /// programs then watch it).
    pub fn set_resolved(
        &mut self,
        probes: &mut KernelPrograms,
        endpoint: &str,
        resolved: Resolved,
    ) -> Option<SocketAddr> {
        let address = match &resolved {
            Resolved::Address(addr) => Some(*addr),
            Resolved::Pending(_) => None,
        };
        if !self.tracker.set_resolved(endpoint, resolved) {
            return None;
        }
        self.watch_peers(probes);
        address
    }

    /// Makes the programs count traffic with every resolved endpoint.
    pub fn watch_peers(&mut self, probes: &mut KernelPrograms) {
        if let Err(e) = probes.watch_peers(&self.tracker.endpoint_addresses()) {
            warn!(error = %e, "cannot watch the endpoints' traffic: their verdicts rest on their links'");
        }
    }

    /// A client waits on `subject`: gather evidence if it is Unknown.
    pub async fn on_demand(&mut self, subject: &Subject, watcher: &NetlinkWatcher) {
        let state = self.publish.borrow().clone();
        self.revalidator
            .on_demand(subject, &state, &mut self.tracker, watcher, monotonic_ns())
            .await;
    }

    /// The host's TCP data goes unanswered on some links: gather evidence about them.
    pub async fn on_silence(&mut self, watcher: &NetlinkWatcher) {
        let now = monotonic_ns();
        let waiting = self.classifier.waiting_links(now);
        self.revalidator
            .on_silence(&waiting, &mut self.tracker, watcher, now)
            .await;
    }

    /// Judges the current observations and publishes the state, logging verdict changes.
    pub async fn classify(&mut self, probes: &mut KernelPrograms, watcher: &NetlinkWatcher) {
        let now = monotonic_ns();
        let observations = self.tracker.observe(probes, watcher, now).await;
        // The links the verdict rests on are watched whatever their names, and their loss
        // ratios count, from the next judgement on, in data segments.
        for link in self.tracker.needed() {
            self.counters.consider_needed(probes, link);
        }
        self.counters.count_egress(probes, self.tracker.needed());
        self.wants_polling = FastPath::wanted(&observations, now);
        let state = self.classifier.classify(&observations, now);
        let before = self.publish.borrow().clone();
        logging::verdict_changes(&before, &state);
        self.publish.send_replace(Arc::new(state));
    }

    pub fn costs(
        &self,
        probes: &KernelPrograms,
        bpf_stats: bool,
        watcher: &NetlinkWatcher,
    ) -> AgentCosts {
        costs::gather(
            probes,
            bpf_stats,
            watcher.overruns(),
            self.fast.asked,
            self.events_received,
        )
    }

    pub fn report(&mut self, probes: &KernelPrograms) {
        self.reporter.report(probes, &self.tracker);
    }
}
