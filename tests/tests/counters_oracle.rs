//! The agent's interface counters against the kernel's own tool: after traffic over a veth, a
//! bridge, a macvlan and a VXLAN device, every link's rx/tx packets and bytes in the agent's
//! state equal what `ip -s -j link` shows: one baseline, the kernel's, since the interface was
//! created, where the state once carried XDP's own counts (since the agent started, and 14
//! bytes a packet high on a bridge or VXLAN) on links that had the XDP counter. Each link
//! here has it, so the test would catch that again.

use std::time::{Duration, Instant};

use netwatch_tests::agent::Agent;
use netwatch_tests::netns::NetNs;
use netwatch_tests::require_privileges;
use netwatch_tests::topology::Pair;
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(30);

/// rx packets, rx bytes, tx packets, tx bytes.
type Counts = [u64; 4];

/// `ip -s -j link show dev NAME` in `ns`.
fn kernel_counts(ns: &NetNs, name: &str) -> Counts {
    let output = ns.exec_ok("ip", &["-s", "-j", "link", "show", "dev", name]);
    let links: Value = serde_json::from_slice(&output.stdout).expect("ip -j prints JSON");
    let stats = &links[0]["stats64"];
    let get = |dir: &str, what: &str| {
        stats[dir][what]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.{what} for {name}: {links}"))
    };
    [
        get("rx", "packets"),
        get("rx", "bytes"),
        get("tx", "packets"),
        get("tx", "bytes"),
    ]
}

fn agent_counts(agent: &Agent, name: &str) -> Option<Counts> {
    let state = agent.get().ok()?;
    let link = state.links.get(name)?;
    Some([
        link.rx_packets,
        link.rx_bytes,
        link.tx_packets,
        link.tx_bytes,
    ])
}

/// Waits (traffic has stopped, the agent refreshes every 0.5 s) until the agent's counts for
/// `name` equal the kernel's; panics with both if they do not within 5 s.
fn assert_agrees(agent: &Agent, ns: &NetNs, name: &str) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kernel = kernel_counts(ns, name);
        let ours = agent_counts(agent, name);
        if ours == Some(kernel) {
            return kernel;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the agent says {ours:?} (rx packets, rx bytes, tx packets, tx bytes), \
             ip -s link says {kernel:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn interface_counters_equal_ip_s_link_on_veth_bridge_macvlan_and_vxlan() {
    require_privileges();
    let pair = Pair::new();
    let (a, b) = (&pair.a, &pair.b);
    let (a_v4, b_v4) = (pair.a_v4.to_string(), pair.b_v4.to_string());
    // B keeps its veth end (nwb0) as it is: the VXLAN tunnel to A runs over it, with
    // addresses in 10.77.0.0/24. A second veth pair (nwq0 in B, nwq1 in A) is a port of a
    // bridge in B that holds 10.78.0.2, with a macvlan on the bridge at 10.78.0.3.
    let vxlan = |local: &str, remote: &str| {
        format!("link add nwvx0 type vxlan id 77 local {local} remote {remote} dstport 4789")
    };
    let peer_in_a = format!("link add nwq0 type veth peer name nwq1 netns {}", a.name());
    let commands: [(&NetNs, &str); 17] = [
        (a, &vxlan(&a_v4, &b_v4)),
        (a, "addr add 10.77.0.1/24 dev nwvx0"),
        (a, "link set nwvx0 up"),
        (b, &vxlan(&b_v4, &a_v4)),
        (b, "addr add 10.77.0.2/24 dev nwvx0"),
        (b, "link set nwvx0 up"),
        (b, &peer_in_a),
        (a, "addr add 10.78.0.1/24 dev nwq1"),
        (a, "link set nwq1 up"),
        (b, "link add nwbr0 type bridge"),
        (b, "link set nwq0 master nwbr0"),
        (b, "link set nwq0 up"),
        (b, "addr add 10.78.0.2/24 dev nwbr0"),
        (b, "link set nwbr0 up"),
        (b, "link add nwmv0 link nwbr0 type macvlan mode bridge"),
        (b, "addr add 10.78.0.3/24 dev nwmv0"),
        (b, "link set nwmv0 up"),
    ];
    for (ns, args) in commands {
        run(ns, "ip", args);
    }
    // Two addresses of one subnet in B: each answers ARP only for itself, so A sends the
    // macvlan's replies to the macvlan.
    b.sysctl("net.ipv4.conf.all.arp_ignore", "1");
    b.sysctl("net.ipv4.conf.all.arp_announce", "2");
    let agent = Agent::start_with(b, &[], None);
    agent.wait_for("agent ready", |_| true, STARTUP);

    // Traffic through each: the tunnel (and the veth under it), the bridge (and its port),
    // the macvlan.
    run(b, "ping", "-c 20 -i 0.01 -s 1200 10.77.0.1");
    run(b, "ping", "-c 20 -i 0.01 -s 1000 10.78.0.1");
    run(b, "ping", "-c 20 -i 0.01 -I nwmv0 10.78.0.1");

    for name in [pair.b_if.as_str(), "nwq0", "nwbr0", "nwmv0", "nwvx0"] {
        let counts = assert_agrees(&agent, b, name);
        assert!(
            counts[0] >= 20 && counts[2] >= 20,
            "{name} carried less than the pings sent: {counts:?}"
        );
        // A bridge port takes no XDP program (the kernel refuses it, and the agent watches
        // it by netlink alone): its counters are checked all the same.
        if name == "nwq0" {
            continue;
        }
        let state = agent.get().expect("the agent's state");
        assert!(
            state.links[name].xdp,
            "{name} has no XDP counter, so this says nothing about it; the agent's log:\n{}",
            agent.tail()
        );
    }
}

/// `program ARGS` (split on spaces) in `ns`, which must succeed.
fn run(ns: &NetNs, program: &str, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    ns.exec_ok(program, &args);
}
