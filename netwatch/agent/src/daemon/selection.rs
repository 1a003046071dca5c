//! Which interfaces the agent watches: by name, with include and exclude patterns. A watched
//! interface gets the XDP counter and appears in the state and the metrics; the others are
//! followed by netlink only (routes through them still count). Whatever the patterns say, a
//! link that carries a default route or that an endpoint is routed through is watched: the
//! verdict rests on it.
//!
//! The default leaves out what container runtimes create by the hundred (veths, bridges,
//! CNI and overlay devices): generic XDP on each would slow every container's traffic, and
//! each would fill the status for its few seconds of life.

use glob::Pattern;

/// Interface names left out unless asked for: Docker, Podman, libvirt, LXC and the common
/// Kubernetes CNIs (Calico, Flannel, Cilium, Weave, the bridge plugin).
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "veth*", "docker*", "br-*", "cni*", "cali*", "flannel*", "cilium*", "lxc*", "virbr*", "vnet*",
    "kube-*", "weave*", "podman*",
];

/// Include and exclude patterns (shell globs: `*`, `?`, `[...]`).
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceSelection {
    /// Only names matching one of these are watched; empty: every name.
    pub include: Vec<Pattern>,
    /// Names matching one of these are not watched, even if included.
    pub exclude: Vec<Pattern>,
}

impl Default for InterfaceSelection {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: DEFAULT_EXCLUDE
                .iter()
                .map(|p| Pattern::new(p).expect("the default patterns are valid"))
                .collect(),
        }
    }
}

impl InterfaceSelection {
    /// No patterns: every interface.
    pub fn everything() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// Whether the patterns choose `name` (a default-route or endpoint link is watched
    /// regardless: see the module's documentation).
    pub fn chooses(&self, name: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| p.matches(name));
        included && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// From include and exclude patterns as a user wrote them.
    pub fn from_patterns(include: &[&str], exclude: &[&str]) -> Result<Self, PatternError> {
        Ok(Self {
            include: Self::patterns(include)?,
            exclude: Self::patterns(exclude)?,
        })
    }

    /// Parses patterns as a user wrote them, naming the first that is not one.
    pub fn patterns(texts: &[&str]) -> Result<Vec<Pattern>, PatternError> {
        texts
            .iter()
            .map(|text| {
                Pattern::new(text).map_err(|e| PatternError {
                    pattern: text.to_string(),
                    reason: e.msg.to_string(),
                })
            })
            .collect()
    }
}

/// An interface pattern that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{pattern}` is not an interface name pattern ({reason}): write a name, or a glob like \"eth*\" or \"en?[0-9]\"")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(include: &[&str], exclude: &[&str]) -> InterfaceSelection {
        InterfaceSelection::from_patterns(include, exclude).unwrap()
    }

    #[test]
    fn the_default_leaves_out_container_devices_and_keeps_the_rest() {
        let default = InterfaceSelection::default();
        for name in [
            "eth0", "enp3s0", "wlan0", "bond0", "nwb0", "vxlan100", "br0",
        ] {
            assert!(default.chooses(name), "{name}");
        }
        for name in [
            "veth1a2b3c",
            "docker0",
            "br-5f2e",
            "cni0",
            "cali12ab",
            "flannel.1",
        ] {
            assert!(!default.chooses(name), "{name}");
        }
    }

    #[test]
    fn include_narrows_and_exclude_wins() {
        let s = selection(&["eth*", "en*"], &["eth9"]);
        assert!(s.chooses("eth0") && s.chooses("enp1s0"));
        assert!(!s.chooses("wlan0"), "not included");
        assert!(!s.chooses("eth9"), "excluded though included");
        assert!(
            selection(&[], &[]).chooses("veth0"),
            "no patterns: everything"
        );
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let error = InterfaceSelection::patterns(&["eth["]).unwrap_err();
        assert!(error.to_string().contains("`eth[`"), "{error}");
    }
}
