//! Each rule of docs/verdict.md and the hysteresis, on a clock the test controls.

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::{
    ebpf::{DestStats, IfaceRx},
    netlink::{Link, LinkStats, NeighState, OperState},
    state::{ProbeResult, SourceRx},
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// A host with one link, `eth0` (ifindex 2), carrying the default route via 198.18.0.1.
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
                retransmits: 0,
                default_route: true,
                gateway: Some((gateway(), Some(NeighState::Reachable))),
            },
        );
        Self {
            classifier: Classifier::new(Thresholds::default()),
            obs,
            now: 100 * S,
        }
    }

    fn link(&mut self) -> &mut LinkObservation {
        self.obs.links.get_mut(&2).unwrap()
    }

    /// Packets received now (and transmitted, in the same number).
    fn traffic(&mut self, packets: u64) {
        let now = self.now;
        let link = self.link();
        let rx = link.xdp_rx.get_or_insert_with(IfaceRx::default);
        rx.packets += packets;
        rx.last_rx_ns = now;
        link.link.stats.tx_packets += packets;
    }

    fn with_endpoint(&mut self) {
        self.obs.endpoints.push(EndpointObservation {
            name: "mirror".into(),
            address: SocketAddr::new("198.18.9.9".parse().unwrap(), 8080),
            oif: Some(2),
            tcp: DestStats::default(),
            rx: Some(SourceRx::default()),
            probe: None,
        });
    }

    fn endpoint(&mut self) -> &mut EndpointObservation {
        &mut self.obs.endpoints[0]
    }

    /// Packets sent now, and as many retransmits.
    fn lossy_traffic(&mut self, packets: u64, retransmits: u64) {
        self.traffic(packets);
        self.link().retransmits += retransmits;
    }

    /// The endpoint's receive counter reads `packets`, the last one arriving now.
    fn endpoint_rx(&mut self, packets: u64) {
        let now = self.now;
        self.endpoint().rx = Some(SourceRx {
            packets,
            last_rx_ns: now,
        });
    }

    /// `packets` more received from the endpoint now.
    fn endpoint_receives(&mut self, packets: u64) {
        let now = self.now;
        let rx = self.endpoint().rx.get_or_insert_with(SourceRx::default);
        rx.packets += packets;
        rx.last_rx_ns = now;
    }

    /// Adds a copy of `eth0` as it is now, renamed; returns it to change further.
    fn add_link(&mut self, ifindex: u32, name: &str) -> &mut LinkObservation {
        let mut copy = self.link().clone();
        copy.link.ifindex = ifindex;
        copy.link.name = name.into();
        self.obs.links.insert(ifindex, copy);
        self.obs.links.get_mut(&ifindex).unwrap()
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

fn gateway() -> IpAddr {
    "198.18.0.1".parse().unwrap()
}

fn link_verdict(state: &NetworkState) -> &Verdict {
    &state.links["eth0"].verdict
}

fn endpoint_verdict(state: &NetworkState) -> &Verdict {
    &state.endpoints["mirror"].verdict
}

fn assert_reason(verdict: &Verdict, needle: &str) {
    assert!(
        verdict.reasons.iter().any(|r| r.contains(needle)),
        "no reason contains {needle:?}: {verdict:?}"
    );
}

#[test]
fn no_traffic_is_unknown_never_up() {
    let mut s = Scenario::new();
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Unknown);
    assert_reason(link_verdict(&state), "unverified");
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
    let mut s = Scenario::new();
    s.traffic(10);
    s.run();
    s.link().link.admin_up = false;
    s.advance(MS);
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Down);
    assert_reason(link_verdict(&state), "administratively down");
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
    assert_eq!(link_verdict(&state).health, Health::Down);
    assert_reason(link_verdict(&state), "operstate lowerlayerdown");
}

#[test]
fn failed_gateway_neighbour_is_down_and_reachable_again_is_up() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().gateway = Some((gateway(), Some(NeighState::Failed)));
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Down);
    assert_reason(link_verdict(&state), "neighbour FAILED");
    assert_eq!(state.host.health, Health::Down);
    s.link().gateway = Some((gateway(), Some(NeighState::Reachable)));
    s.traffic(1);
    assert_eq!(s.run().host.health, Health::Up);
}

#[test]
fn stale_gateway_neighbour_is_not_down() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().gateway = Some((gateway(), Some(NeighState::Stale)));
    assert_eq!(link_verdict(&s.run()).health, Health::Up);
}

#[test]
fn flapping_is_degraded_until_stable_for_the_window_and_the_hold() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.run();
    // Four carrier changes within a second, most of them never seen as events.
    s.advance(200 * MS);
    s.link().link.carrier_changes += 4;
    s.traffic(1);
    let state = s.run();
    assert_eq!(link_verdict(&state).health, Health::Degraded);
    assert_reason(link_verdict(&state), "flapping");
    assert_eq!(state.host.health, Health::Degraded);
    // Still Degraded while the changes are inside the 10 s window...
    let states = s.run_for(9 * S, 500 * MS, |s| s.traffic(5));
    assert!(states
        .iter()
        .all(|st| link_verdict(st).health == Health::Degraded));
    // ...and Up once they have left it and the recovery hold has passed.
    let states = s.run_for(5 * S, 500 * MS, |s| s.traffic(5));
    assert_eq!(link_verdict(states.last().unwrap()).health, Health::Up);
}

#[test]
fn ten_percent_retransmits_is_degraded_without_flapping_and_recovers_after_the_hold() {
    let mut s = Scenario::new();
    s.traffic(100);
    s.run();
    let mut tick = 0u64;
    let lossy = s.run_for(10 * S, 250 * MS, |s| {
        tick += 1;
        s.traffic(100);
        // 10 retransmits per 100 packets, bunched as real loss is.
        if tick.is_multiple_of(2) {
            s.link().retransmits += 20;
        }
    });
    let first_degraded = lossy
        .iter()
        .position(|st| link_verdict(st).health == Health::Degraded)
        .expect("10% loss must give Degraded");
    assert!(
        first_degraded <= 4,
        "Degraded only after {first_degraded} ticks"
    );
    assert!(
        lossy[first_degraded..]
            .iter()
            .all(|st| link_verdict(st).health == Health::Degraded),
        "the verdict flapped during steady 10% loss"
    );
    assert_reason(link_verdict(lossy.last().unwrap()), "retransmits");
    let clean = s.run_for(8 * S, 250 * MS, |s| s.traffic(100));
    let first_up = clean
        .iter()
        .position(|st| link_verdict(st).health == Health::Up)
        .expect("0% loss must give Up again");
    assert!(
        clean[first_up..]
            .iter()
            .all(|st| link_verdict(st).health == Health::Up),
        "the verdict flapped after recovery"
    );
    // Not before the loss window has drained and the hold has passed.
    assert!(
        first_up as u64 * 250 * MS >= 3 * S,
        "Up after only {first_up} ticks"
    );
}

#[test]
fn a_ratio_between_the_two_bars_keeps_the_current_verdict() {
    let mut s = Scenario::new();
    s.traffic(100);
    s.run();
    // 1% sits between the leave bar (0.5%) and the enter bar (2%): healthy stays healthy...
    let states = s.run_for(5 * S, 250 * MS, |s| s.lossy_traffic(400, 4));
    assert!(states
        .iter()
        .all(|st| link_verdict(st).health == Health::Up));
    // ...and once Degraded (at 10%), 1% keeps it Degraded.
    s.run_for(2 * S, 250 * MS, |s| s.lossy_traffic(100, 10));
    let states = s.run_for(5 * S, 250 * MS, |s| s.lossy_traffic(400, 4));
    assert!(states
        .iter()
        .all(|st| link_verdict(st).health == Health::Degraded));
}

#[test]
fn a_few_retransmits_on_a_quiet_link_are_not_loss() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().retransmits += 2;
    assert_eq!(link_verdict(&s.run()).health, Health::Up);
}

#[test]
fn rx_stall_while_transmitting_is_degraded() {
    let mut s = Scenario::new();
    s.traffic(1000);
    s.run();
    let states = s.run_for(1500 * MS, 100 * MS, |s| {
        s.link().link.stats.tx_packets += 10;
        s.link().retransmits += 1;
    });
    let last = link_verdict(states.last().unwrap());
    assert_eq!(last.health, Health::Degraded);
    assert!(
        last.reasons
            .iter()
            .any(|r| r.contains("rx stalled") || r.contains("retransmits")),
        "{last:?}"
    );
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
fn endpoint_without_replies_is_degraded_then_down_once_silent() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.traffic(100);
    s.endpoint_rx(50);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    // Everything to it is dropped: RTO retransmits at +200 ms and +600 ms, no reply.
    s.advance(200 * MS);
    s.endpoint().tcp.retransmits = 1;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.advance(400 * MS);
    s.endpoint().tcp.retransmits = 2;
    let state = s.run();
    assert_eq!(endpoint_verdict(&state).health, Health::Degraded);
    assert_reason(endpoint_verdict(&state), "no reply: 2 retransmits");
    // Still nothing back two stall periods after the last reply: Down.
    s.advance(1_400 * MS);
    s.endpoint().tcp.retransmits = 3;
    let state = s.run();
    assert_eq!(endpoint_verdict(&state).health, Health::Down);
    assert_reason(endpoint_verdict(&state), "blackholed: 3 retransmits");
    assert_eq!(state.host.health, Health::Degraded);
    assert_reason(&state.host, "endpoint mirror down");
    // Replies again: no longer Down at once (Down is not held); Degraded while the recent
    // retransmits are inside the loss window.
    s.advance(100 * MS);
    s.endpoint_rx(51);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Degraded);
}

#[test]
fn a_lost_retransmission_under_loss_is_not_a_blackhole() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.traffic(100);
    s.endpoint_rx(50);
    s.run();
    // Two retransmits 0.6 s apart without a reply, then replies again.
    s.advance(600 * MS);
    s.endpoint().tcp.retransmits = 2;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Degraded);
    s.advance(100 * MS);
    s.endpoint_rx(60);
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
    let link_up = states
        .iter()
        .position(|st| link_verdict(st).health == Health::Up)
        .expect("link Up again");
    let endpoint_up = states
        .iter()
        .position(|st| endpoint_verdict(st).health == Health::Up)
        .expect("endpoint Up again");
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
    assert_eq!(endpoint_verdict(&state).health, Health::Down);
    assert_reason(endpoint_verdict(&state), "its link eth0 is down");
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
    s.endpoint_rx(10);
    s.traffic(1000);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
    s.advance(100 * MS);
    s.obs.links.get_mut(&3).unwrap().link.carrier = false;
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
    s.endpoint_rx(11);
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
}

#[test]
fn a_new_receive_counter_is_a_baseline_not_traffic() {
    // Without per-source counts an endpoint's reception is its link's: when the route moves
    // to another link, that link's count is not a jump in what the endpoint sent.
    let mut s = Scenario::new();
    s.with_endpoint();
    s.endpoint().rx = None;
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
fn endpoint_connects_failing_is_down_and_succeeding_is_up() {
    let mut s = Scenario::new();
    s.with_endpoint();
    s.run();
    s.advance(S);
    s.endpoint().tcp.connects_failed = 3;
    assert_reason(endpoint_verdict(&s.run()), "3 connection attempts failed");
    s.advance(11 * S);
    s.endpoint().tcp.connects_ok = 1;
    assert_eq!(endpoint_verdict(&s.run()).health, Health::Up);
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
    assert_eq!(endpoint_verdict(&state).health, Health::Unknown);
    assert_reason(endpoint_verdict(&state), "unverified");
}

#[test]
fn host_without_default_route_is_down() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.link().default_route = false;
    let state = s.run();
    assert_eq!(state.host.health, Health::Down);
    assert_reason(&state.host, "no default route");
}

#[test]
fn host_with_one_of_two_uplinks_down_is_degraded() {
    let mut s = Scenario::new();
    s.traffic(10);
    s.add_link(3, "eth1").link.carrier = false;
    let state = s.run();
    assert_eq!(state.host.health, Health::Degraded);
    assert_reason(&state.host, "eth1 down: no carrier");
}

#[test]
fn loopback_is_not_judged() {
    let mut s = Scenario::new();
    s.add_link(1, "lo").link.loopback = true;
    assert!(!s.run().links.contains_key("lo"));
}
