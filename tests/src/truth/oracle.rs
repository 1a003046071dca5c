//! The kernel's own answers, from `ip -j`, to hold the agent's view against.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netwatch_client::state::NetworkState;
use serde_json::Value;

use crate::netns::NetNs;

fn ip_json(ns: &NetNs, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let output = ns.exec_ok("ip", &full);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`ip {}` printed no JSON ({e}): {}",
            full.join(" "),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The links that carry a main-table IPv4 or IPv6 default route, as `ip route` shows them.
pub fn default_route_links(ns: &NetNs) -> BTreeSet<String> {
    let mut links = BTreeSet::new();
    for family in ["-4", "-6"] {
        let routes = ip_json(ns, &[family, "route", "show", "default"]);
        for route in routes.as_array().into_iter().flatten() {
            if let Some(dev) = route["dev"].as_str() {
                links.insert(dev.to_string());
            }
        }
    }
    links
}

/// The links the agent says carry a default route.
pub fn agent_default_route_links(state: &NetworkState) -> BTreeSet<String> {
    state
        .links
        .values()
        .filter(|l| l.default_route)
        .map(|l| l.name.clone())
        .collect()
}

/// The link the kernel would send a packet to `addr` through (`ip route get`).
pub fn route_dev(ns: &NetNs, addr: IpAddr) -> Option<String> {
    let output = ns.exec("ip", &["-j", "route", "get", &addr.to_string()]);
    if !output.status.success() {
        return None;
    }
    let routes: Value = serde_json::from_slice(&output.stdout).ok()?;
    routes[0]["dev"].as_str().map(String::from)
}

/// Every link but loopback, as `ip link` shows them.
pub fn links(ns: &NetNs) -> BTreeSet<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["link_type"] != "loopback")
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

/// How many file descriptors process `pid` holds.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}
