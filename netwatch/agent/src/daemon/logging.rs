//! The agent's log lines for link, address, route and verdict changes. Their messages and
//! fields are stable: tests and people's scripts read them (`--log-format json`).

use tracing::info;

use crate::{
    netlink::{up_down, Address, Link, Route},
    state::{Health, NetworkState},
};

/// An `info!` about a link: who it is and its state, then the fields and message given.
macro_rules! link_info {
    ($link:ident, $($rest:tt)+) => {
        info!(
            ifindex = $link.ifindex,
            ifname = %$link.name,
            admin = up_down($link.admin_up),
            carrier = up_down($link.carrier),
            oper = %$link.oper,
            $($rest)+
        )
    };
}

/// "link added" for a new link, "link changed" when its state moved; nothing otherwise.
pub fn link_updated(before: Option<&Link>, link: &Link) {
    match before {
        None => link_info!(
            link,
            mtu = link.mtu,
            mac = %link.mac.map(|m| m.to_string()).unwrap_or_default(),
            "link added"
        ),
        Some(before) if link.state_differs(before) => {
            link_info!(link, carrier_changes = link.carrier_changes, "link changed")
        }
        Some(_) => {}
    }
}

pub fn link_removed(link: &Link) {
    info!(ifindex = link.ifindex, ifname = %link.name, "link removed");
}

pub fn address(a: &Address, added: bool) {
    let message = if added {
        "address added"
    } else {
        "address removed"
    };
    info!(ifindex = a.ifindex, address = %a.addr, prefix_len = a.prefix_len, "{message}");
}

pub fn route(route: &Route) {
    if route.is_default() && route.in_main_table() {
        info!(gateway = ?route.gateway, oifs = ?route.oifs, ipv6 = route.ipv6, "default route changed");
    }
}

/// "verdict changed" per subject whose health moved. At info level like every other report
/// of the network's state: warnings are kept for trouble with netwatch itself.
pub fn verdict_changes(before: &NetworkState, after: &NetworkState) {
    for subject in after.changes_since(before) {
        let Some(now) = after.verdict(&subject) else {
            continue;
        };
        let previous = before.verdict(&subject).map(|v| v.health);
        if previous == Some(now.health) {
            continue;
        }
        info!(
            subject = %subject,
            health = %now.health,
            previous = previous.map_or("none", Health::as_str),
            reasons = now.reasons.join("; "),
            "verdict changed"
        );
    }
}
