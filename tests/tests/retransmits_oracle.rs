//! The agent's retransmit counts against the kernel's own tool: on a lossy TCP flow with
//! offloads on (veth's default: TSO and GSO), the segments the agent says were retransmitted
//! through the sender's link are within 2% of `nstat TcpRetransSegs` in the sender's
//! namespace, IPv4 and IPv6; a lossy flow in another namespace at the same time is not
//! counted.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use netwatch_tests::agent::Agent;
use netwatch_tests::netns::NetNs;
use netwatch_tests::topology::{Pair, PairOptions};
use netwatch_tests::{nft, require_privileges, traffic};

const STARTUP: Duration = Duration::from_secs(30);
const PORT: u16 = 5303;

/// `nstat -az TcpRetransSegs` in `ns`: the namespace's count since it was made.
fn nstat_retrans_segs(ns: &NetNs) -> u64 {
    let output = ns.exec_ok("nstat", &["-az", "TcpRetransSegs"]);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("TcpRetransSegs")).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("nstat printed no TcpRetransSegs: {text}"))
}

/// Drops 5% of the TCP segments to `dest:PORT` on `receiver`'s input: loss on the path.
fn lossy(receiver: &NetNs, dest: IpAddr) {
    let family = if dest.is_ipv6() { "ip6" } else { "ip" };
    nft::apply(
        receiver,
        &format!(
            "table inet nwt_loss {{\n\tchain in {{ type filter hook input priority 0; policy \
             accept; {family} daddr {dest} tcp dport {PORT} numgen random mod 100 < 5 drop; }}\n}}\n"
        ),
    );
}

fn segments_agree_with_nstat(ipv6: bool) {
    require_privileges();
    let options = PairOptions {
        ipv6,
        ..PairOptions::default()
    };
    let (pair, bystander) = (Pair::with(options), Pair::with(options));
    let dest = |p: &Pair| {
        if ipv6 {
            IpAddr::V6(p.b_v6)
        } else {
            IpAddr::V4(p.b_v4)
        }
    };
    lossy(&pair.b, dest(&pair));
    lossy(&bystander.b, dest(&bystander));
    let agent = Agent::start_with(&pair.a, &[], None);
    agent.wait_for("agent ready", |_| true, STARTUP);
    let counted = || {
        let state = agent.get().expect("the agent's state");
        state.links.get(&pair.a_if).map_or(0, |l| l.retransmits)
    };
    let (ours_before, kernel_before) = (counted(), nstat_retrans_segs(&pair.a));

    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let target = dest(&bystander);
            traffic::tcp_bulk(&bystander.a, &bystander.b, target, PORT, 16 << 20, limit())
        });
        let ours = traffic::tcp_bulk(&pair.a, &pair.b, dest(&pair), PORT, 16 << 20, limit());
        assert!(ours.received > 0, "nothing arrived: {ours:?}");
        other.join().expect("the bystander's flow");
    });
    let kernel = nstat_retrans_segs(&pair.a) - kernel_before;
    assert!(
        nstat_retrans_segs(&bystander.a) > 0 && kernel > 0,
        "no retransmits: the loss was not injected"
    );
    // The agent attributes retransmits when it judges (every 0.5 s): wait until it has them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ours = loop {
        let ours = counted().saturating_sub(ours_before);
        if ours.abs_diff(kernel) * 50 <= kernel || Instant::now() >= deadline {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "{}: nstat TcpRetransSegs {kernel}, the agent {ours} on {}",
        if ipv6 { "IPv6" } else { "IPv4" },
        pair.a_if
    );
    assert!(
        ours.abs_diff(kernel) * 50 <= kernel,
        "the agent counted {ours} retransmitted segments on {}, nstat TcpRetransSegs {kernel}: \
         more than 2% apart (the bystander's flow in another namespace retransmitted {})",
        pair.a_if,
        nstat_retrans_segs(&bystander.a)
    );
}

fn limit() -> Duration {
    Duration::from_secs(15)
}

#[test]
fn retransmitted_segments_agree_with_nstat_over_ipv4() {
    segments_agree_with_nstat(false);
}

#[test]
fn retransmitted_segments_agree_with_nstat_over_ipv6() {
    segments_agree_with_nstat(true);
}
