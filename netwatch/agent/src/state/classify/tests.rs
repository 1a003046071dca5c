//! Each rule of docs/verdict.md and the hysteresis, on a clock the test controls.

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::{
    netlink::{Link, LinkStats, NeighState, OperState},
    state::{DestStats, GatewayObservation, IfaceRx, IfaceTx, PeerStats, ProbeResult},
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// A host with one link, `eth0` (ifindex 2), carrying the default route via 198.18.0.1,
/// with both XDP and the egress counter attached.
struct Scenario {
    classifier: Classifier,
    obs: Observations,
    now: u64,
}

impl Scenario {
    fn new() -> Self {
        let link = Link {
            ifindex: 2,
            name: "eth0".into(),
            admin_up: true,
            carrier: true,
            oper: OperState::Up,
            mtu: 1500,
            mac: None,
            loopback: false,
            carrier_changes: 1,
            xdp_prog_id: None,
            stats: LinkStats::default(),
        };
        let mut obs = Observations::default();
        obs.links.insert(
            2,
            LinkObservation {
                link,
                xdp_rx: Some(IfaceRx::default()),
                tx: Some(IfaceTx::default()),
                retrans_segs: 0,
                retransmits: 0,
                stall_retrans_segs: 0,
                stall_retransmits: 0,
                default_route: true,
                gateway: Some(gateway_in(NeighState::Reachable)),
                neighbour_confirmed: None,
            },
        );
        Self {
            classifier: Classifier::new(Thresholds::default()),
            obs,
            now: 100 * S,
        }
    }

    /// Classified once after `eth0` carried `packets` each way.
    fn after_traffic(packets: u64) -> Self {
        let mut s = Self::new();
        s.traffic(packets);
        s.run();
        s
    }

    /// `eth0` busy and the endpoint answering the `packets` sent to it; not yet classified.
    fn with_answering_endpoint(packets: u64) -> Self {
        let mut s = Self::new();
        s.with_endpoint();
        s.traffic(100);
        s.endpoint_sends(packets);
        s.endpoint_receives(packets);
        s
    }

    fn link(&mut self) -> &mut LinkObservation {
        self.link_at(2)
    }

    fn link_at(&mut self, ifindex: u32) -> &mut LinkObservation {
        self.obs.links.get_mut(&ifindex).unwrap()
    }

    /// Packets received now, after as many data segments sent a moment before.
    fn traffic(&mut self, packets: u64) {
        self.sends(packets);
        self.receives(packets);
    }

    /// Data segments sent now.
    fn sends(&mut self, segs: u64) {
        let now = self.now;
        let link = self.link();
        let tx = link.tx.get_or_insert_with(IfaceTx::default);
        tx.data_segs += segs;
        tx.data_buffers += segs;
        tx.last_data_ns = now.saturating_sub(MS);
        link.link.stats.tx_packets += segs;
    }

    /// Packets received now.
    fn receives(&mut self, packets: u64) {
        let now = self.now;
        let rx = self.link().xdp_rx.get_or_insert_with(IfaceRx::default);
        rx.packets += packets;
        rx.last_rx_ns = now;
    }

    fn with_endpoint(&mut self) {
        self.obs.endpoints.push(EndpointObservation {
            name: "mirror".into(),
            target: "198.18.9.9:8080".into(),
            address: Some(SocketAddr::new("198.18.9.9".parse().unwrap(), 8080)),
            unresolved: None,
            oif: Some(2),
            tcp: DestStats::default(),
            last_outage_ns: None,
            peer: Some(PeerStats::default()),
            probe: None,
        });
    }

    fn endpoint(&mut self) -> &mut EndpointObservation {
        &mut self.obs.endpoints[0]
    }

    /// Segments sent now, and as many retransmitted.
    fn lossy_traffic(&mut self, segs: u64, retransmitted: u64) {
        self.traffic(segs);
        self.link().retrans_segs += retransmitted;
        self.link().retransmits += retransmitted;
    }

    /// `packets` more received from the endpoint now.
    fn endpoint_receives(&mut self, packets: u64) {
        let now = self.now;
        let peer = self.endpoint().peer.get_or_insert_with(PeerStats::default);
        peer.rx_packets += packets;
        peer.last_rx_ns = now;
    }

    /// `segs` more data segments sent to the endpoint now.
    fn endpoint_sends(&mut self, segs: u64) {
        let now = self.now;
        let peer = self.endpoint().peer.get_or_insert_with(PeerStats::default);
        peer.tx_data_segs += segs;
        peer.tx_data_buffers += segs;
        peer.last_tx_data_ns = now;
    }

    /// A retransmit toward the endpoint now, with the socket's RTO backoff then.
    fn endpoint_retransmits(&mut self, backoff: u32) {
        let now = self.now;
        let tcp = &mut self.endpoint().tcp;
        tcp.retrans_segs += 1;
        tcp.retransmits += 1;
        (tcp.retrans_backoff, tcp.last_retrans_ns) = (backoff, now);
        if backoff > 0 {
            (tcp.stall_backoff, tcp.last_stall_ns) = (backoff, now);
        }
        self.endpoint_sends(1);
    }

    /// Adds a copy of `eth0` as it is now, renamed; returns it to change further.
    fn add_link(&mut self, ifindex: u32, name: &str) -> &mut LinkObservation {
        let mut copy = self.link().clone();
        copy.link.ifindex = ifindex;
        copy.link.name = name.into();
        self.obs.links.insert(ifindex, copy);
        self.link_at(ifindex)
    }

    fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    fn run(&mut self) -> NetworkState {
        self.classifier.classify(&self.obs, self.now)
    }

    /// Runs every `step` for `total`, calling `each` before each run; returns every state.
    fn run_for(
        &mut self,
        total: u64,
        step: u64,
        mut each: impl FnMut(&mut Self),
    ) -> Vec<NetworkState> {
        let mut states = Vec::new();
        let end = self.now + total;
        while self.now < end {
            self.advance(step);
            each(self);
            states.push(self.run());
        }
        states
    }
}

fn gateway_in(state: NeighState) -> GatewayObservation {
    GatewayObservation {
        addr: gateway(),
        state: Some(state),
        failing: state == NeighState::Failed,
        confirmed_at_ns: None,
    }
}

/// How many times `verdict` changed health across `states`.
fn changes(states: &[NetworkState], verdict: impl Fn(&NetworkState) -> &Verdict) -> usize {
    states
        .windows(2)
        .filter(|w| verdict(&w[0]).health != verdict(&w[1]).health)
        .count()
}

fn gateway() -> IpAddr {
    "198.18.0.1".parse().unwrap()
}

fn link_verdict(state: &NetworkState) -> &Verdict {
    &state.links["eth0"].verdict
}

fn endpoint_verdict(state: &NetworkState) -> &Verdict {
    &state.endpoints["mirror"].verdict
}

/// The first of `states` in which `verdict` is `health`.
fn first(
    states: &[NetworkState],
    verdict: impl Fn(&NetworkState) -> &Verdict,
    health: Health,
) -> Option<usize> {
    states.iter().position(|st| verdict(st).health == health)
}

/// Asserts that `verdict` is `health` in every one of `states`; a failure shows them all.
fn assert_throughout(
    states: &[NetworkState],
    verdict: impl Fn(&NetworkState) -> &Verdict,
    health: Health,
) {
    let seen: Vec<&Verdict> = states.iter().map(&verdict).collect();
    assert!(
        seen.iter().all(|v| v.health == health),
        "not {health:?} throughout: {seen:#?}"
    );
}

fn assert_reason(verdict: &Verdict, needle: &str) {
    assert!(
        verdict.reasons.iter().any(|r| r.contains(needle)),
        "no reason contains {needle:?}: {verdict:?}"
    );
}

/// Asserts the health and that a reason contains `needle`.
fn assert_verdict(verdict: &Verdict, health: Health, needle: &str) {
    assert_eq!(verdict.health, health, "{verdict:?}");
    assert_reason(verdict, needle);
}

#[test]
fn no_traffic_is_unknown_never_up() {
    let mut s = Scenario::new();
    let state = s.run();
    assert_verdict(link_verdict(&state), Health::Unknown, "unverified");
    assert_eq!(state.host.health, Health::Unknown);
}

#[test]
fn recent_traffic_is_up_and_goes_unknown_once_stale() {
    let mut s = Scenario::new();
    s.traffic(10);
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Up);
    assert_eq!(state.host.health, Health::Up);
    s.advance(11 * S);
    assert_eq!(link_verdict(&s.run()).health, Health::Unknown);
}

#[test]
fn admin_down_is_down_at_once_and_recovery_is_up_at_once() {
    let mut s = Scenario::after_traffic(10);
    s.link().link.admin_up = false;
    s.advance(MS);
    let state = s.run();
    assert_verdict(link_verdict(&state), Health::Down, "administratively down");
    assert_eq!(state.host.health, Health::Down);
    s.link().link.admin_up = true;
    s.advance(MS);
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Up);
    assert_eq!(state.host.health, Health::Up);
}

#[test]
fn carrier_loss_and_lower_layer_down_are_down() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().link.carrier = false;
    assert_reason(link_verdict(&s.run()), "no carrier");
    s.link().link.carrier = true;
    s.link().link.oper = OperState::LowerLayerDown;
    let state = s.run();
    assert_verdict(
        link_verdict(&state),
        Health::Down,
        "operstate lowerlayerdown",
    );
}

#[test]
fn failed_gateway_neighbour_is_down_and_reachable_again_is_up() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().gateway = Some(gateway_in(NeighState::Failed));
    let state = s.run();
    assert_verdict(link_verdict(&state), Health::Down, "neighbour FAILED");
    assert_eq!(state.host.health, Health::Down);
    s.link().gateway = Some(gateway_in(NeighState::Reachable));
    s.traffic(1);
    assert_eq!(s.run().host.health, Health::Up);
}

#[test]
fn stale_gateway_neighbour_is_not_down() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().gateway = Some(gateway_in(NeighState::Stale));
    assert_eq!(link_verdict(&s.run()).health, Health::Up);
}

#[test]
fn flapping_is_degraded_until_stable_for_the_window_and_the_hold() {
    let mut s = Scenario::after_traffic(10);
    // Four carrier changes within a second, most of them never seen as events.
    s.advance(200 * MS);
    s.link().link.carrier_changes += 4;
    s.traffic(1);
    let state = s.run();
    assert_verdict(link_verdict(&state), Health::Degraded, "flapping");
    assert_eq!(state.host.health, Health::Degraded);
    // Still Degraded while the changes are inside the 10 s window...
    let states = s.run_for(9 * S, 500 * MS, |s| s.traffic(5));
    assert_throughout(&states, link_verdict, Health::Degraded);
    // ...and Up once they have left it and the recovery hold has passed.
    let states = s.run_for(5 * S, 500 * MS, |s| s.traffic(5));
    assert_eq!(link_verdict(states.last().unwrap()).health, Health::Up);
}

#[test]
fn ten_percent_retransmits_is_degraded_without_flapping_and_up_half_a_second_after_it_ends() {
    let mut s = Scenario::after_traffic(100);
    let mut tick = 0u64;
    let lossy = s.run_for(10 * S, 250 * MS, |s| {
        tick += 1;
        // 10 retransmits per 100 packets, bunched as real loss is.
        s.lossy_traffic(100, if tick.is_multiple_of(2) { 20 } else { 0 });
    });
    let first_degraded =
        first(&lossy, link_verdict, Health::Degraded).expect("10% loss must give Degraded");
    assert!(
        first_degraded <= 4,
        "Degraded only after {first_degraded} ticks"
    );
    // Steady loss must not make the verdict flap.
    assert_throughout(&lossy[first_degraded..], link_verdict, Health::Degraded);
    assert_reason(link_verdict(lossy.last().unwrap()), "loss: ");
    let clean = s.run_for(8 * S, 250 * MS, |s| s.traffic(100));
    let first_up = first(&clean, link_verdict, Health::Up).expect("0% loss must give Up again");
    // Nor recovery.
    assert_throughout(&clean[first_up..], link_verdict, Health::Up);
    // A busy link shows the loss has ended within half a second: no window to drain, no
    // hold to wait.
    assert!(first_up <= 3, "Up only after {first_up} ticks");
}

#[test]
fn after_loss_a_trickle_of_traffic_waits_out_the_window_and_the_hold() {
    let mut s = Scenario::after_traffic(100);
    s.run_for(3 * S, 250 * MS, |s| s.lossy_traffic(100, 10));
    // Two segments a tick: too few to tell the loss ended, so the ratio must drain and
    // the hold pass.
    let clean = s.run_for(8 * S, 250 * MS, |s| s.traffic(2));
    let first_up = first(&clean, link_verdict, Health::Up).expect("Up again");
    assert!(
        first_up as u64 * 250 * MS >= 3 * S,
        "Up after only {first_up} ticks"
    );
    assert_throughout(&clean[first_up..], link_verdict, Health::Up);
}

#[test]
fn a_link_back_from_down_is_up_though_data_went_unanswered_during_the_outage() {
    let mut s = Scenario::after_traffic(100);
    // Data sent just before the carrier went, never answered.
    s.advance(100 * MS);
    s.sends(20);
    s.link().link.carrier = false;
    s.run_for(3 * S, 250 * MS, |_| {});
    s.link().link.carrier = true;
    // Back: the outage's retransmits go out first, the answers follow within the tick.
    let back = s.run_for(3 * S, 100 * MS, |s| s.traffic(10));
    assert_throughout(&back, link_verdict, Health::Up);
}

#[test]
fn the_host_is_up_with_its_links_without_a_hold_of_its_own() {
    let mut s = Scenario::new();
    s.add_link(3, "eth1");
    let traffic = |s: &mut Scenario| {
        s.traffic(10);
        let now = s.now;
        let rx = s.link_at(3).xdp_rx.as_mut().unwrap();
        rx.packets += 10;
        rx.last_rx_ns = now;
    };
    traffic(&mut s);
    s.run();
    s.advance(100 * MS);
    s.link_at(3).link.carrier = false;
    traffic(&mut s);
    let state = s.run();
    assert_eq!(state.host.health, Health::Degraded, "{:?}", state.host);
    // The second uplink is back: the host is Up in the same classification.
    s.advance(100 * MS);
    s.link_at(3).link.carrier = true;
    traffic(&mut s);
    let state = s.run();
    assert_eq!(state.links["eth1"].verdict.health, Health::Up);
    assert_eq!(state.host.health, Health::Up, "{:?}", state.host);
}

#[test]
fn one_socket_in_backoff_beside_others_that_progress_is_not_a_blackhole() {
    // An abandoned transfer's socket retransmits with a long backoff while a new transfer to
    // the same server runs: the per-destination counters show both.
    let mut s = Scenario::with_answering_endpoint(50);
    s.run();
    let states = s.run_for(6 * S, 100 * MS, |s| {
        s.traffic(20);
        s.endpoint_sends(20);
        s.endpoint_receives(20);
        if (s.now / (100 * MS)).is_multiple_of(15) {
            s.endpoint_retransmits(5);
        }
    });
    assert_throughout(&states, endpoint_verdict, Health::Up);
}

#[test]
fn a_stall_answered_with_a_reset_is_over() {
    let mut s = Scenario::with_answering_endpoint(50);
    s.run();
    for backoff in 0..4 {
        s.advance(400 * MS);
        s.endpoint_retransmits(backoff);
        s.run();
        s.advance(100 * MS);
        s.run();
    }
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Down);
    // The server forgot the connection and says so: the path works.
    s.advance(50 * MS);
    s.endpoint().tcp.resets_received += 1;
    s.endpoint_receives(1);
    assert_ne!(endpoint_verdict(&s.run()).health, Health::Down);
}

#[test]
fn a_stall_from_before_its_link_came_back_is_forgotten() {
    let mut s = Scenario::with_answering_endpoint(50);
    s.run();
    // The link goes; the endpoint's connection times out into it, again and again.
    s.link().link.carrier = false;
    for backoff in 0..5 {
        s.advance(400 * MS);
        s.endpoint_retransmits(backoff);
        s.run();
    }
    s.link().link.carrier = true;
    // Back, and that connection is abandoned: nothing more is sent to it.
    let states = s.run_for(2 * S, 250 * MS, |s| s.traffic(10));
    for state in &states {
        let verdict = endpoint_verdict(state);
        assert!(
            !verdict.reasons.iter().any(|r| r.contains("blackholed")),
            "{verdict:?}"
        );
    }
    // A new connection works: Up.
    s.advance(100 * MS);
    s.endpoint().tcp.last_connect_ok_ns = s.now;
    s.endpoint().tcp.connects_ok += 1;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
}

#[test]
fn a_ratio_between_the_two_bars_keeps_the_current_verdict() {
    let mut s = Scenario::after_traffic(100);
    // 1% sits between the leave bar (0.5%) and the enter bar (2%): healthy stays healthy...
    let states = s.run_for(5 * S, 250 * MS, |s| s.lossy_traffic(400, 4));
    assert_throughout(&states, link_verdict, Health::Up);
    // ...and once Degraded (at 10%), 1% keeps it Degraded.
    s.run_for(2 * S, 250 * MS, |s| s.lossy_traffic(100, 10));
    let states = s.run_for(5 * S, 250 * MS, |s| s.lossy_traffic(400, 4));
    assert_throughout(&states, link_verdict, Health::Degraded);
}

#[test]
fn a_few_retransmits_on_a_quiet_link_are_not_loss() {
    let mut s = Scenario::new();
    s.lossy_traffic(10, 2);
    assert_eq!(link_verdict(&s.run()).health, Health::Up);
}

#[test]
fn data_unanswered_on_a_link_is_degraded_not_unknown() {
    // The gateway vanished: data keeps going out, nothing comes back, and TCP's timeouts
    // space its retransmits seconds apart (none in the last second is no excuse).
    let mut s = Scenario::after_traffic(1000);
    s.advance(100 * MS);
    s.sends(10);
    let states = s.run_for(5 * S, 500 * MS, |_| {});
    let degraded =
        first(&states, link_verdict, Health::Degraded).expect("unanswered data must give Degraded");
    assert!(degraded <= 2, "Degraded only after {degraded} ticks");
    assert_throughout(&states[degraded..], link_verdict, Health::Degraded);
    assert_reason(link_verdict(states.last().unwrap()), "no reply");
    // Anything received ends it.
    s.receives(1);
    assert_eq!(
        link_verdict(&s.run()).health,
        Health::Degraded,
        "recovery hold"
    );
    let states = s.run_for(4 * S, 500 * MS, |s| s.traffic(1));
    assert_eq!(link_verdict(states.last().unwrap()).health, Health::Up);
}

#[test]
fn data_answered_within_the_stall_time_is_healthy() {
    let mut s = Scenario::new();
    s.traffic(10);
    // A request every 2 s, answered 5 ms later: never "no reply".
    let states = s.run_for(20 * S, 250 * MS, |s| {
        if (s.now / MS).is_multiple_of(2000) {
            s.sends(1);
        }
        if (s.now / MS) % 2000 == 250 {
            s.receives(1);
        }
    });
    assert_throughout(&states, link_verdict, Health::Up);
}

#[test]
fn unanswered_data_beside_a_confirmed_neighbour_is_a_destination_problem() {
    // One destination does not answer, but the kernel confirmed the gateway a moment ago:
    // the link works (the endpoint rules judge the destination).
    let mut s = Scenario::after_traffic(10);
    s.advance(100 * MS);
    s.sends(5);
    s.run_for(2 * S, 500 * MS, |_| {});
    let now = s.now;
    s.link().neighbour_confirmed = Some((gateway(), now));
    // Up once the recovery hold after the "no reply" period has passed, and for good.
    let states = s.run_for(5 * S, 500 * MS, |s| s.sends(1));
    assert_throughout(&states[6..], link_verdict, Health::Up);
    assert_reason(
        link_verdict(states.last().unwrap()),
        "confirmed reachable by the kernel",
    );
}

#[test]
fn a_confirmed_neighbour_is_evidence_the_link_works() {
    // An idle host: nothing received for long, but the kernel just confirmed the gateway.
    let mut s = Scenario::new();
    assert_eq!(s.run().host.health, Health::Unknown);
    let now = s.now;
    s.link().neighbour_confirmed = Some((gateway(), now - 200 * MS));
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Up);
    assert_eq!(state.host.health, Health::Up);
    assert_reason(
        link_verdict(&state),
        "neighbour 198.18.0.1 confirmed reachable by the kernel 0.2s ago",
    );
}

#[test]
fn a_link_without_xdp_is_up_only_once_its_kernel_counter_grows() {
    let mut s = Scenario::new();
    s.link().xdp_rx = None;
    s.link().link.stats.rx_packets = 5_000;
    let state = s.run();
    assert_eq!(
        link_verdict(&state).health,
        Health::Unknown,
        "a first reading proves nothing"
    );
    s.advance(500 * MS);
    assert_eq!(link_verdict(&s.run()).health, Health::Unknown);
    s.link().link.stats.rx_packets += 1;
    s.advance(500 * MS);
    let state = s.run();
    assert_verdict(
        link_verdict(&state),
        Health::Up,
        "the kernel's counters show traffic",
    );
}

#[test]
fn retransmits_from_before_the_link_came_back_do_not_count() {
    let mut s = Scenario::after_traffic(100);
    // Carrier lost for 2 s while a flow retransmits into it.
    s.link().link.carrier = false;
    let down = s.run_for(2 * S, 250 * MS, |s| s.lossy_traffic(0, 30));
    assert_eq!(link_verdict(down.last().unwrap()).health, Health::Down);
    s.link().link.carrier = true;
    let back = s.run_for(3 * S, 100 * MS, |s| s.traffic(100));
    assert_throughout(&back, link_verdict, Health::Up);
}

#[test]
fn retransmits_after_a_stall_are_its_recovery_not_loss() {
    let mut s = Scenario::after_traffic(100);
    s.advance(S);
    // A flow resumes after a timeout: it resends its window, counted as after a stall.
    s.lossy_traffic(60, 50);
    s.link().stall_retrans_segs += 50;
    s.link().stall_retransmits += 50;
    assert_eq!(link_verdict(&s.run()).health, Health::Up);
}

/// A blackhole of 3 timeouts, the path back, and a recovery whose burst of queued data
/// times out once more (the kernel's latest stall is then a single timeout) while it resends
/// `resent` segments; `remembered`: the agent kept the outage's time, as the tracker does.
fn recovery_with_a_short_stall(remembered: bool) -> Health {
    let mut s = Scenario::with_answering_endpoint(50);
    s.run();
    for (wait, backoff) in [(200, 0), (400, 1), (800, 2)] {
        s.advance(wait * MS);
        s.endpoint_retransmits(backoff);
        s.run();
    }
    let outage_at = s.now;
    s.advance(1600 * MS);
    s.endpoint_retransmits(3);
    let last_timeout = s.now;
    s.advance(10 * MS);
    s.endpoint_receives(5);
    s.endpoint_sends(60);
    s.run();
    s.advance(300 * MS);
    for _ in 0..20 {
        s.endpoint_retransmits(0);
    }
    s.endpoint_retransmits(1);
    s.endpoint_receives(40);
    s.endpoint_sends(20);
    s.endpoint().last_outage_ns = remembered.then_some(last_timeout.max(outage_at));
    endpoint_verdict(&s.run()).health
}

#[test]
fn a_short_stall_in_an_outages_recovery_does_not_make_its_resends_loss() {
    assert_eq!(recovery_with_a_short_stall(true), Health::Up);
    // The kernel's counters alone would call it loss: what the agent's memory is for.
    assert_eq!(recovery_with_a_short_stall(false), Health::Degraded);
}

#[test]
fn loss_keeps_a_link_degraded_through_a_window_with_few_retransmits() {
    let mut s = Scenario::after_traffic(100);
    s.run_for(2 * S, 250 * MS, |s| s.lossy_traffic(100, 10));
    // A slow stretch of the same 5% loss: 2 retransmitted segments per 3 s window.
    let states = s.run_for(6 * S, 500 * MS, |s| {
        s.lossy_traffic(7, u64::from((s.now / (1500 * MS)).is_multiple_of(2)))
    });
    assert_throughout(&states, link_verdict, Health::Degraded);
}

#[test]
fn since_changes_only_with_health() {
    let mut s = Scenario::new();
    s.traffic(10);
    let first = link_verdict(&s.run()).since_ns;
    s.advance(S);
    s.traffic(10);
    assert_eq!(link_verdict(&s.run()).since_ns, first);
    s.link().link.carrier = false;
    s.advance(S);
    assert_eq!(link_verdict(&s.run()).since_ns, s.now);
}

#[test]
fn timeouts_in_a_row_are_degraded_then_down() {
    let mut s = Scenario::with_answering_endpoint(50);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    // Everything to it is dropped: RTO retransmits at +200 ms, +600 ms, +1.4 s.
    s.advance(200 * MS);
    s.endpoint_retransmits(0);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.advance(400 * MS);
    s.endpoint_retransmits(1);
    // Seen once, a stall waits for a second look: another connection may be progressing.
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.advance(100 * MS);
    let state = s.run();
    assert_verdict(
        endpoint_verdict(&state),
        Health::Degraded,
        "no reply: 2 timeouts in a row",
    );
    s.advance(700 * MS);
    s.endpoint_retransmits(2);
    let state = s.run();
    assert_verdict(
        endpoint_verdict(&state),
        Health::Down,
        "blackholed: 3 timeouts in a row",
    );
    assert_verdict(&state.host, Health::Degraded, "endpoint mirror down");
    // It answers again: new data flows beyond what was resent.
    s.advance(1600 * MS);
    s.endpoint_retransmits(3);
    s.advance(10 * MS);
    s.endpoint_receives(5);
    s.endpoint_sends(40);
    assert_ne!(endpoint_verdict(&s.run()).health, Health::Down);
}

#[test]
fn a_one_way_blackhole_is_down_without_flip_flops() {
    // Its packets still reach us (its own retransmissions), ours never get through: the
    // timeouts keep coming, and nothing it sends is an acknowledgement of ours.
    let mut s = Scenario::with_answering_endpoint(50);
    s.run();
    let start = s.now;
    let mut next_rto = 200 * MS;
    let mut backoff = 0;
    let states = s.run_for(12 * S, 100 * MS, |s| {
        let elapsed = s.now - start;
        if elapsed >= next_rto {
            s.endpoint_retransmits(backoff);
            backoff += 1;
            next_rto += (200 * MS) << backoff;
        }
        if (elapsed / MS).is_multiple_of(700) {
            s.endpoint_receives(1);
        }
    });
    let first_down =
        first(&states, endpoint_verdict, Health::Down).expect("a one-way blackhole must give Down");
    assert!(first_down <= 15, "Down only after {first_down} ticks");
    assert_eq!(
        changes(&states[first_down..], endpoint_verdict),
        0,
        "the verdict changed after Down"
    );
}

#[test]
fn a_single_timeout_under_loss_is_not_a_stall() {
    let mut s = Scenario::with_answering_endpoint(100);
    s.run();
    s.advance(600 * MS);
    s.endpoint_retransmits(0);
    s.advance(50 * MS);
    s.endpoint_sends(100);
    s.endpoint_receives(100);
    assert_ne!(endpoint_verdict(&s.run()).health, Health::Down);
}

#[test]
fn an_endpoint_recovers_with_its_link_without_a_second_hold() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.traffic(100);
    s.run();
    // The link is lossy, the endpoint inherits Degraded from it...
    s.run_for(2 * S, 250 * MS, |s| {
        s.lossy_traffic(100, 10);
        s.endpoint_receives(50);
    });
    // ...then clean: both are Up in the same classification once the link's hold is over.
    let states = s.run_for(10 * S, 250 * MS, |s| {
        s.traffic(100);
        s.endpoint_receives(50);
    });
    let link_up = first(&states, link_verdict, Health::Up).expect("link Up again");
    let endpoint_up = first(&states, endpoint_verdict, Health::Up).expect("endpoint Up again");
    assert_eq!(
        endpoint_up, link_up,
        "the endpoint waited a hold of its own"
    );
}

#[test]
fn endpoint_without_route_or_behind_a_down_link_is_down() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.endpoint().oif = None;
    assert_reason(endpoint_verdict(&s.run()), "no route to 198.18.9.9");
    s.endpoint().oif = Some(2);
    s.link().link.carrier = false;
    let state = s.run();
    assert_verdict(
        endpoint_verdict(&state),
        Health::Down,
        "its link eth0 is down",
    );
    assert_reason(endpoint_verdict(&state), "no carrier");
}

#[test]
fn an_endpoint_whose_link_fails_stays_down_until_it_is_heard_from_again() {
    // Its own link (ifindex 3) goes down and the route falls back to the default link: what
    // it sent just before the cut is no news that it is reachable the new way.
    let mut s = Scenario::new();
    s.with_endpoint();
    let own = s.add_link(3, "eth1");
    own.default_route = false;
    own.gateway = None;
    s.endpoint().oif = Some(3);
    s.endpoint_receives(10);
    s.traffic(1000);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.advance(100 * MS);
    s.link_at(3).link.carrier = false;
    assert_reason(endpoint_verdict(&s.run()), "its link eth1 is down");
    for _ in 0..5 {
        s.advance(100 * MS);
        s.endpoint().oif = Some(2);
        s.traffic(10);
        let state = s.run();
        assert_eq!(endpoint_verdict(&state).health, Health::Down, "{state:?}");
    }
    assert_reason(
        endpoint_verdict(&s.run()),
        "nothing heard from it since it went down",
    );
    // Without news for the evidence window, it is merely unverified.
    s.advance(11 * S);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Unknown);
    // A packet from it is news.
    s.advance(S);
    s.endpoint_receives(1);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
}

#[test]
fn a_new_receive_counter_is_a_baseline_not_traffic() {
    // Without per-source counts an endpoint's reception is its link's: when the route moves
    // to another link, that link's count is not a jump in what the endpoint sent.
    let mut s = Scenario::new();
    s.with_endpoint();
    s.endpoint().peer = None;
    s.add_link(3, "eth1").xdp_rx = Some(IfaceRx {
        packets: 500,
        ..IfaceRx::default()
    });
    s.run();
    s.advance(20 * S);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Unknown);
    s.endpoint().oif = Some(3);
    s.advance(MS);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Unknown);
}

#[test]
fn a_refused_connect_is_down_even_after_earlier_successes() {
    let mut s = Scenario::new();
    s.with_endpoint();
    let now = s.now;
    s.endpoint().tcp.connects_ok = 5;
    s.endpoint().tcp.last_connect_ok_ns = now;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    // The port closes: the next connect gets a RST.
    s.advance(100 * MS);
    let now = s.now;
    s.endpoint().tcp.connects_failed = 1;
    s.endpoint().tcp.last_connect_failed_ns = now;
    s.endpoint().tcp.resets_received = 1;
    s.endpoint_receives(1);
    let state = s.run();
    assert_verdict(endpoint_verdict(&state), Health::Down, "connections fail");
    // It opens again.
    s.advance(2 * S);
    let now = s.now;
    s.endpoint().tcp.connects_ok = 6;
    s.endpoint().tcp.last_connect_ok_ns = now;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
}

#[test]
fn resets_are_no_evidence_that_an_endpoint_serves() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.run();
    s.advance(S);
    // Only RSTs came from it.
    s.endpoint().tcp.resets_received = 3;
    s.endpoint_receives(3);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Unknown);
}

#[test]
fn an_unresolved_endpoint_is_unknown_with_the_reason() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.endpoint().address = None;
    s.endpoint().oif = None;
    s.endpoint().target = "mirror.example:443".into();
    s.endpoint().unresolved = Some("cannot resolve mirror.example: no answer".into());
    let state = s.run();
    assert_verdict(
        endpoint_verdict(&state),
        Health::Unknown,
        "mirror.example:443: cannot resolve mirror.example",
    );
}

#[test]
fn endpoint_probe_decides_when_there_is_no_traffic() {
    let mut s = Scenario::new();
    s.with_endpoint();
    let now = s.now;
    s.endpoint().probe = Some(ProbeResult {
        at_ns: now,
        error: None,
    });
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.endpoint().probe = Some(ProbeResult {
        at_ns: now,
        error: Some("connection refused".into()),
    });
    assert_reason(
        endpoint_verdict(&s.run()),
        "probe failed: connection refused",
    );
}

#[test]
fn endpoint_with_no_traffic_is_unknown() {
    let mut s = Scenario::new();
    s.with_endpoint();
    let state = s.run();
    assert_verdict(endpoint_verdict(&state), Health::Unknown, "unverified");
}

#[test]
fn host_without_default_route_is_down() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().default_route = false;
    let state = s.run();
    assert_verdict(&state.host, Health::Down, "no default route");
}

#[test]
fn host_with_one_of_two_uplinks_down_is_degraded() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.add_link(3, "eth1").link.carrier = false;
    let state = s.run();
    assert_verdict(&state.host, Health::Degraded, "eth1 down: no carrier");
}

#[test]
fn loopback_is_not_judged() {
    let mut s = Scenario::new();
    s.add_link(1, "lo").link.loopback = true;
    assert!(!s.run().links.contains_key("lo"));
}
