use super::*;
use crate::ebpf::DestStats;
use crate::netlink::{Address, LinkStats, NeighState, Neighbour, OperState};

fn link(carrier: bool, admin_up: bool) -> Link {
    Link {
        ifindex: 2,
        name: "eth0".into(),
        admin_up,
        carrier,
        oper: if carrier {
            OperState::Up
        } else {
            OperState::LowerLayerDown
        },
        mtu: 1500,
        mac: None,
        loopback: false,
        carrier_changes: 0,
        xdp_prog_id: None,
        stats: LinkStats::default(),
    }
}

const OUTAGE: OutageRule = OutageRule {
    recovery_ns: 3_000_000_000,
    timeouts: 3,
};

fn tracker() -> Tracker {
    Tracker::new(Vec::new(), OUTAGE)
}

#[test]
fn a_failed_gateway_is_forgotten_when_the_carrier_comes_back() {
    let mut tracker = tracker();
    let addr = "198.18.0.1".parse().unwrap();
    let gateway = Neighbour {
        ifindex: 2,
        addr,
        state: NeighState::Failed,
        confirmed_ago: None,
    };
    tracker.apply(&NetEvent::LinkUpdated(link(false, true)), 0);
    tracker.apply(&NetEvent::NeighbourUpdated(gateway), 0);
    assert_eq!(tracker.neighbour_state(2, addr), Some(NeighState::Failed));
    tracker.apply(&NetEvent::LinkUpdated(link(false, true)), 0);
    assert_eq!(
        tracker.neighbour_state(2, addr),
        Some(NeighState::Failed),
        "still no carrier: still failed"
    );
    tracker.apply(&NetEvent::LinkUpdated(link(true, true)), 0);
    assert_eq!(tracker.neighbour_state(2, addr), None);
}

#[test]
fn changes_the_kernel_may_follow_with_silent_route_deletions_make_routes_stale() {
    let mut tracker = tracker();
    tracker.apply(&NetEvent::LinkUpdated(link(true, true)), 0);
    tracker.set_routes(Vec::new());
    assert!(!tracker.routes_stale());
    // New counters only: nothing the kernel acts on.
    let mut busier = link(true, true);
    busier.stats.rx_packets = 10;
    tracker.apply(&NetEvent::LinkUpdated(busier), 0);
    assert!(!tracker.routes_stale());
    for event in [
        NetEvent::LinkUpdated(link(true, false)),
        NetEvent::LinkUpdated(link(false, true)),
        NetEvent::AddressRemoved(Address {
            ifindex: 2,
            addr: "198.18.0.2".parse().unwrap(),
            prefix_len: 24,
        }),
        NetEvent::LinkRemoved(link(true, true)),
    ] {
        tracker.set_routes(Vec::new());
        tracker.apply(&event, 0);
        assert!(tracker.routes_stale(), "{event:?}");
    }
}

#[test]
fn a_failed_re_resolution_keeps_the_address_a_name_had() {
    let spec = EndpointSpec {
        name: "mirror".into(),
        address: "mirror.example:443".parse().unwrap(),
    };
    let mut tracker = Tracker::new(vec![spec], OUTAGE);
    assert!(tracker.endpoint_addresses().is_empty());
    let addr: SocketAddr = "198.18.0.2:443".parse().unwrap();
    assert!(tracker.set_resolved("mirror", Resolved::Address(addr)));
    assert!(!tracker.set_resolved("mirror", Resolved::Pending("timed out".into())));
    assert_eq!(tracker.endpoint_addresses(), [addr.ip()]);
}

fn stalled(backoff: u32, at_ns: u64) -> DestStats {
    DestStats {
        retrans_segs: 1,
        retransmits: 1,
        last_retrans_ns: at_ns,
        retrans_backoff: backoff,
        stall_backoff: backoff,
        last_stall_ns: at_ns,
        ..DestStats::default()
    }
}

#[test]
fn an_outage_is_remembered_through_a_shorter_stall_until_its_recovery_window_ends() {
    let mut tracker = tracker();
    let addr: IpAddr = "198.18.9.9".parse().unwrap();
    let s = 1_000_000_000;
    tracker.remember_outages(&HashMap::from([(addr, stalled(1, 10 * s))]), 10 * s);
    assert_eq!(tracker.outages.get(&addr), None, "one timeout is no outage");
    tracker.remember_outages(&HashMap::from([(addr, stalled(4, 20 * s))]), 20 * s);
    // The kernel now shows a single timeout, the latest: the outage before it still counts.
    tracker.remember_outages(&HashMap::from([(addr, stalled(0, 21 * s))]), 21 * s);
    assert_eq!(tracker.outages.get(&addr), Some(&(20 * s)));
    tracker.remember_outages(&HashMap::from([(addr, stalled(0, 21 * s))]), 23 * s + 1);
    assert_eq!(tracker.outages.get(&addr), None);
}
