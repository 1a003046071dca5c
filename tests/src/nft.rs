//! nftables inside a test namespace: load a ruleset, drop at random, read a named counter.

use crate::netns::{assert_success, NetNs};

/// Loads `ruleset` (nft syntax) into `ns` with `nft -f -`.
pub fn apply(ns: &NetNs, ruleset: &str) {
    let output = ns.exec_with_stdin("nft", &["-f", "-"], Some(ruleset));
    assert!(
        output.status.success(),
        "nft rejected the ruleset in {} ({}):\n{ruleset}\nstderr: {}",
        ns.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Drops, in `ns`'s input, a random `per_mille` thousandths of the IPv4 packets from `from`
/// (table `ip TABLE`, which [`delete_table`] removes).
pub fn drop_randomly(ns: &NetNs, table: &str, from: std::net::Ipv4Addr, per_mille: u32) {
    apply(
        ns,
        &format!(
            "table ip {table} {{\n\
             \tchain in {{ type filter hook input priority 0; policy accept; \
             ip saddr {from} numgen random mod 1000 < {per_mille} drop; }}\n\
             }}\n"
        ),
    );
}

/// The packet count of named counter `name` in table `family table`.
pub fn counter_packets(ns: &NetNs, family: &str, table: &str, name: &str) -> u64 {
    let args = ["-j", "list", "counter", family, table, name];
    let output = ns.exec("nft", &args);
    assert_success(ns.name(), "nft", &args, &output);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("`nft -j list counter` printed no JSON: {e}"));
    // {"nftables": [{"metainfo": {..}}, {"counter": {"name": .., "packets": N, "bytes": M}}]}
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("counter"))
        .find(|counter| counter["name"] == name)
        .and_then(|counter| counter["packets"].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in `nft -j list counter` output: {json}"))
}

/// Deletes table `family table` from `ns` (the faults it held stop at once).
pub fn delete_table(ns: &NetNs, family: &str, table: &str) {
    ns.exec_ok("nft", &["delete", "table", family, table]);
}
