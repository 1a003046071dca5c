//! A netlink storm: hundreds of veth pairs created, brought up and deleted in bursts while
//! the agent listens on a small event buffer, so that it overruns. Afterwards its view must
//! equal the kernel's, deletions included, and the bpf links of the deleted interfaces must
//! be released.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use crate::agent::Agent;
use crate::nft;
use crate::topology::{add_veth, delete_link, set_link_up, Pair};
use crate::traffic::{Pace, PacedFlow};
use crate::truth::oracle::{fd_count, links};
use crate::verdicts::Subscription;

/// What a storm left behind.
#[derive(Clone, Debug)]
pub struct StormReport {
    pub pairs: u32,
    /// Overruns the agent logged.
    pub overruns: usize,
    /// From the storm's end until the agent's links equalled the kernel's.
    pub converged_after: Option<Duration>,
    /// The links each side has at the end.
    pub agent_links: BTreeSet<String>,
    pub kernel_links: BTreeSet<String>,
    /// The agent's open file descriptors before the storm and after it settled.
    pub fds_before: usize,
    pub fds_after: usize,
}

/// Creates `pairs` veth pairs, brings them up, then deletes them all, in a namespace the
/// agent watches with a 4 KiB event buffer.
pub fn netlink_storm(pairs: u32) -> StormReport {
    // B is the agent's namespace. A lossy flow from it keeps the kernel programs' events
    // coming every few milliseconds, as on a busy host, so that something else always
    // wants the agent's attention while it re-reads.
    let pair = Pair::new();
    let ns = &pair.b;
    nft::drop_randomly(&pair.a, "nwt_storm", pair.b_v4, 100);
    let agent = Agent::start_with(ns, &["--event-buffer", "4096"], None);
    agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
    let sub = Subscription::connect(agent.socket());
    let flow = PacedFlow::start(
        ns,
        &pair.a,
        IpAddr::V4(pair.a_v4),
        5481,
        Pace {
            max_time: Duration::from_secs(120),
            ..Pace::default()
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let fds_before = fd_count(agent.pid());

    let pid = agent.pid() as libc::pid_t;
    ns.block_on(async {
        // All of them up, then all of them gone: the agent's re-reads after overruns meet
        // hundreds of links, and its kernel programs see traffic on each (neighbour
        // discovery as they come up), so every branch of its loop is busy meanwhile. The
        // first tenth is made while the agent is stopped: an agent quick enough to keep up
        // with the rest would otherwise never overrun, and the re-read would go untested.
        // SAFETY: kill has no memory preconditions; the agent is our child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        for i in 0..pairs {
            if i == pairs / 10 {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            let (index, peer) = (1000 + 2 * i, 1001 + 2 * i);
            add_veth(&format!("st{i}a"), index, &format!("st{i}b"), peer).await;
            set_link_up(index, true).await;
            set_link_up(peer, true).await;
        }
        for i in 0..pairs {
            delete_link(1000 + 2 * i).await;
        }
    });
    let storm_end = Instant::now();
    let kernel_links = links(ns);
    let agent_view = |sub: &Subscription| -> BTreeSet<String> {
        sub.latest().state.links.keys().cloned().collect()
    };
    let mut converged_after = None;
    while storm_end.elapsed() < Duration::from_secs(10) {
        if agent_view(&sub) == kernel_links {
            converged_after = Some(storm_end.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The fds of deleted interfaces' links are closed as the agent forgets them.
    std::thread::sleep(Duration::from_secs(1));
    let report = StormReport {
        pairs,
        overruns: overruns(&agent),
        converged_after,
        agent_links: agent_view(&sub),
        kernel_links,
        fds_before,
        fds_after: fd_count(agent.pid()),
    };
    drop(flow);
    drop(sub);
    drop(agent);
    report
}

fn overruns(agent: &Agent) -> usize {
    agent
        .lines_so_far()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("netlink overrun"))
        })
        .count()
}
