//! The kernel programs against the kernel's own accounting: the receive counter's packet
//! counts (at XDP and at tc ingress) against the interface counters, retransmit counts against the packets an nft rule dropped, and only
//! for the namespace the programs watch.

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netwatch_agent::ebpf::{KernelPrograms, RxHook, XdpMode};
use netwatch_tests::netns::NetNs;
use netwatch_tests::topology::{rx_counters_here, rx_prog_id_here, set_link_up_here, Pair};
use netwatch_tests::{nft, require_privileges, traffic};

#[test]
fn xdp_counts_match_kernel_rx_counters() {
    counts_match_kernel_rx_counters(RxHook::Xdp(XdpMode::Generic));
}

#[test]
fn tc_ingress_counts_match_kernel_rx_counters() {
    counts_match_kernel_rx_counters(RxHook::Tc);
}

fn counts_match_kernel_rx_counters(hook: RxHook) {
    require_privileges();
    // B's end starts down: nothing can arrive on it, so the baseline taken before attaching is
    // exact (A sends router solicitations, MLD reports and ND on its own once the link is up).
    let pair = Pair::new_with_b_down();
    let b = pair.b_index;

    let (xdp, kernel) = pair.b.run(|| {
        let mut programs = KernelPrograms::load(netwatch::KERNEL_PROGRAMS)
            .unwrap_or_else(|e| panic!("loading the programs: {e}"));
        let baseline = rx_counters_here(b);
        programs
            .attach_rx(b, &pair.b_if, hook)
            .unwrap_or_else(|e| panic!("attaching the counter to {} (index {b}): {e}", pair.b_if));
        let ids = programs.program_ids();
        assert_eq!(
            rx_prog_id_here(b),
            Some(match hook {
                RxHook::Xdp(_) => ids.xdp,
                RxHook::Tc => ids.rx,
            }),
            "the kernel does not show netwatch's receive counter at {} on {}",
            hook.as_str(),
            pair.b_if
        );
        set_link_up_here(b, true);

        traffic::ping(&pair.a, IpAddr::V4(pair.b_v4), 5);
        traffic::ping(&pair.a, IpAddr::V6(pair.b_v6), 5);
        let bytes = 20_000_000;
        let transfer = traffic::tcp_bulk(
            &pair.a,
            &pair.b,
            IpAddr::V4(pair.b_v4),
            5201,
            bytes,
            Duration::from_secs(30),
        );
        assert!(
            transfer.complete && transfer.received == bytes,
            "the bulk transfer did not complete: {transfer:?}"
        );

        // Taking B's end down stops anything more from arriving; then both sides must agree
        // once the last packets already queued to B have been through the counter.
        set_link_up_here(b, false);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let kernel = rx_counters_here(b) - baseline;
            let xdp = programs
                .iface_rx(b)
                .unwrap_or_else(|e| panic!("reading the receive counters: {e}"))
                .unwrap_or_else(|| panic!("the counter counted nothing on index {b}"));
            if (xdp.packets, xdp.bytes) == (kernel.packets, kernel.bytes)
                || Instant::now() >= deadline
            {
                break (xdp, kernel);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    eprintln!(
        "{}: the counter at {} counted {xdp:?}; the kernel since attach {kernel:?}",
        pair.b_if,
        hook.as_str()
    );
    assert!(
        kernel.bytes >= 20_000_000,
        "the kernel counted only {} bytes on {}: the traffic did not arrive",
        kernel.bytes,
        pair.b_if
    );
    assert_eq!(
        (xdp.packets, xdp.bytes),
        (kernel.packets, kernel.bytes),
        "the counter's (packets, bytes) at {} differ from the kernel's IFLA_STATS64 rx \
         counters since attach",
        hook.as_str()
    );
}

#[test]
fn retransmits_counted_for_ipv4_destination_under_nft_loss() {
    retransmits_counted_under_nft_loss(false);
}

#[test]
fn retransmits_counted_for_ipv6_destination_under_nft_loss() {
    retransmits_counted_under_nft_loss(true);
}

/// Drops 5% of the data A sends to B and checks that the retransmit count for B is at least
/// the number of packets dropped.
///
/// The drop happens on B's input hook, i.e. on the path: a drop in A's own output hook is not
/// loss to TCP, which sees the local error (-EPERM from nf_hook_slow) and sends the segment
/// again later as new data, so hardly any retransmission follows (seen here: 0-5 retransmit
/// events for 6-15 output drops, against 14-50 events for 7-18 input drops).
fn retransmits_counted_under_nft_loss(ipv6: bool) {
    require_privileges();
    let pair = Pair::new();
    let port = 5202;
    let (family, dest) = if ipv6 {
        ("ip6", IpAddr::V6(pair.b_v6))
    } else {
        ("ip", IpAddr::V4(pair.b_v4))
    };
    nft::apply(
        &pair.b,
        &format!(
            "table inet nwt {{
                counter dropped {{}}
                chain in {{
                    type filter hook input priority 0; policy accept;
                    {family} daddr {dest} tcp dport {port} numgen random mod 100 < 5 counter name dropped drop
                }}
            }}"
        ),
    );

    // The tracepoints fire for every namespace, but the programs count only sockets of the
    // namespace they were loaded in: the sender's (A) counts; a bystander's sees none of it.
    let bystander = NetNs::new();
    let (ready, loaded) = mpsc::channel();
    let (finish, finished) = mpsc::channel::<()>();
    let bystander_programs = bystander.spawn("bystander-programs", move || {
        let programs = KernelPrograms::load(netwatch::KERNEL_PROGRAMS)
            .unwrap_or_else(|e| panic!("loading the bystander's programs: {e}"));
        ready.send(()).expect("the test waits for the bystander");
        let _ = finished.recv();
        programs
            .dest_stats()
            .unwrap_or_else(|e| panic!("reading the bystander's stats: {e}"))
    });
    loaded.recv().expect("the bystander's programs loaded");
    let stats = pair.a.run(|| {
        let programs = KernelPrograms::load(netwatch::KERNEL_PROGRAMS)
            .unwrap_or_else(|e| panic!("loading the programs: {e}"));
        let transfer = traffic::tcp_bulk(
            &pair.a,
            &pair.b,
            dest,
            port,
            8_000_000,
            Duration::from_secs(10),
        );
        assert!(transfer.received > 0, "nothing arrived: {transfer:?}");
        programs
            .dest_stats()
            .unwrap_or_else(|e| panic!("reading destination stats: {e}"))
    });

    let _ = finish.send(());
    let bystander_stats = bystander_programs.join().expect("the bystander's thread");
    assert!(
        !bystander_stats.contains_key(&dest),
        "programs in another namespace counted A's retransmits: {:?}",
        bystander_stats.get(&dest)
    );

    let dropped = nft::counter_packets(&pair.b, "inet", "nwt", "dropped");
    assert!(
        dropped > 0,
        "the nft rule dropped nothing: no loss was injected"
    );
    let known: Vec<_> = stats.keys().collect();
    let counted = stats
        .get(&dest)
        .unwrap_or_else(|| panic!("no stats for {dest}; destinations seen: {known:?}"));
    eprintln!("{dest}: nft dropped {dropped} packets; the programs counted {counted:?}");
    assert!(
        counted.retrans_segs > 0 && counted.retrans_segs >= dropped,
        "{} retransmits counted for {dest}, but nft dropped {dropped} packets ({counted:?})",
        counted.retrans_segs
    );
}
