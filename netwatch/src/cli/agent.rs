//! `netwatch agent`: its flags, and how they, the config file and the built-in defaults
//! resolve into one `AgentConfig` (in that order of precedence; the paths come resolved
//! from `crate::settings`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::ValueEnum;

use super::{parse_duration, PathArgs};
use crate::{
    agent::{AgentConfig, EndpointSpec, InterfaceSelection, MetricsListen, ProbeSpec, RunAs},
    config::{Config, ConfigError, RxHookName, DEFAULT_METRICS_LISTEN},
    ebpf::{RxHook, XdpMode},
    metrics::{WebConfig, WebConfigError},
    server::ServerOptions,
    settings::Settings,
};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Every key of the configuration file is optional; flags given here win over it.
    #[command(flatten)]
    pub paths: PathArgs,

    /// Watch the network namespace NAME (as `ip netns` names it) instead of the current one.
    /// Its socket then defaults to /run/netwatch/netns-NAME.sock.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// How often to log one line per interface (rates and retransmits), e.g. `5s`, `500ms`;
    /// `0` turns it off. [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub report_interval: Option<Duration>,

    /// Which hook counts received packets: `xdp` runs before the kernel builds a socket
    /// buffer where the driver has native XDP, but in generic mode copies every large packet
    /// first, and another tool's XDP program keeps it off that interface; `tc` (tc ingress)
    /// copies nothing and stacks with other tools' programs. [default: tc, or xdp when an
    /// XDP mode is given]
    #[arg(long, value_enum)]
    pub rx_hook: Option<RxHookArg>,

    /// Where XDP runs, and asks for XDP as the hook: `generic` works on every interface and never resets a NIC; `native`
    /// runs in the driver (faster), but some drivers briefly drop the link to attach it.
    /// [default: generic]
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,

    /// Watch only the interfaces whose names match one of these comma-separated globs, like
    /// `eth*,en*`. A link with a default route or an endpoint's route is watched anyway.
    /// [default: every interface]
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',', value_parser = parse_pattern)]
    pub interfaces: Option<Vec<glob::Pattern>>,

    /// Leave out the interfaces whose names match one of these comma-separated globs (`''`
    /// leaves out nothing). A link with a default route or an endpoint's route is watched
    /// anyway. [default: container devices: veth*, docker*, br-*, cni*, cali*, flannel*,
    /// cilium*, lxc*, virbr*, vnet*, kube-*, weave*, podman*]
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',', value_parser = parse_pattern)]
    pub exclude_interfaces: Option<Vec<glob::Pattern>>,

    /// Receive buffer of the netlink event socket, in bytes. When a burst overruns it the
    /// agent re-reads the full state, so this only trades memory for fewer re-reads.
    /// [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub event_buffer: Option<usize>,

    /// Whether the agent may ask the kernel to re-validate a neighbour on the local link
    /// (one ARP request or neighbour solicitation, sent by the kernel) while a client waits
    /// on an Unknown verdict, or the host's own TCP data goes unanswered. `false` sends
    /// nothing, ever; Unknown then lasts until traffic proves something. [default: true]
    #[arg(long, value_name = "BOOL")]
    pub evidence_on_demand: Option<bool>,

    /// The user to become once the kernel programs are attached, keeping only CAP_BPF and
    /// CAP_NET_ADMIN; `root` stays root. [default: netwatch if that user exists, else nobody]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Serve Prometheus metrics on this loopback address, or `off` (off loopback only through
    /// the configuration file, behind TLS and authentication: `[metrics] web_config`).
    /// [default: 127.0.0.1:9477, skipped with a warning if it cannot be bound]
    #[arg(long, value_name = "ADDR|off", value_parser = parse_metrics)]
    pub metrics: Option<MetricsFlag>,

    /// Have the kernel account each BPF program's run time while the agent runs, for the
    /// netwatch_bpf_program_* metrics. Host-wide: every BPF program on the host pays two
    /// clock reads per run (about 70 ns), more than the XDP counter costs. [default: false]
    #[arg(long, value_name = "BOOL")]
    pub program_costs: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RxHookArg {
    Xdp,
    Tc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Generic,
    Native,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFlag {
    Listen(SocketAddr),
    Off,
}

/// Why the agent's settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `[metrics] web_config` cannot be used, or does not guard the address.
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    /// The user to run as does not exist.
    #[error("user `{0}` does not exist: create it (`useradd --system --no-create-home --shell /usr/sbin/nologin {0}`), or set [agent] user (or --user) to an existing one")]
    NoSuchUser(String),
    /// The user database could not be read.
    #[error("looking up user `{user}` failed: {source}")]
    LookupUser {
        user: String,
        #[source]
        source: std::io::Error,
    },
}

impl AgentArgs {
    /// The agent's settings: flags, then the file, then defaults, with the paths `settings`
    /// resolved; the agent loads `kernel_programs`. Endpoint host names are resolved later,
    /// by the agent, in the background.
    pub fn resolve(
        &self,
        settings: &Settings,
        kernel_programs: &'static [u8],
    ) -> Result<AgentConfig, SettingsError> {
        let file = &settings.config;
        if let (Some(group), Some(path)) = (&file.socket.group, &settings.config_file) {
            if let Ok(None) = netwatch_client::accounts::gid_of(group) {
                let expected = format!(
                    "an existing group: this host has no group `{group}` (create it with \
                     `groupadd {group}`, or name another)"
                );
                if let Some(error) = Config::invalid_value(path, "socket", "group", expected) {
                    return Err(error.into());
                }
            }
        }
        let report_interval = match self.report_interval {
            Some(interval) => (!interval.is_zero()).then_some(interval),
            None => file.agent.report_interval,
        };
        let xdp_mode = match self.xdp_mode {
            Some(XdpModeArg::Generic) => XdpMode::Generic,
            Some(XdpModeArg::Native) => XdpMode::Native,
            None => file.agent.xdp_mode,
        };
        // An XDP mode flag alone asks for XDP, as one in the file does.
        let file_hook = match (self.xdp_mode, file.agent.rx_hook) {
            (Some(_), _) | (None, RxHookName::Xdp) => RxHookArg::Xdp,
            (None, RxHookName::Tc) => RxHookArg::Tc,
        };
        let rx_hook = match self.rx_hook.unwrap_or(file_hook) {
            RxHookArg::Tc => RxHook::Tc,
            RxHookArg::Xdp => RxHook::Xdp(xdp_mode),
        };
        let interfaces = InterfaceSelection {
            include: self
                .interfaces
                .clone()
                .unwrap_or(file.interfaces.include.clone()),
            exclude: (self.exclude_interfaces.clone()).unwrap_or(file.interfaces.exclude.clone()),
        };
        // Read now, as root: the key is usually readable by root alone.
        let web = (file.metrics.web_config.as_deref())
            .map(WebConfig::load)
            .transpose()?
            .map(Arc::new);
        let metrics = match self.metrics {
            Some(MetricsFlag::Off) => None,
            Some(MetricsFlag::Listen(addr)) => Some(MetricsListen {
                addr,
                required: true,
                web: web.clone(),
            }),
            None => file.metrics.listen.map(|addr| MetricsListen {
                addr,
                required: addr != DEFAULT_METRICS_LISTEN,
                web: web.clone(),
            }),
        };
        if let Some(MetricsListen {
            addr,
            web: Some(web),
            ..
        }) = &metrics
        {
            web.check_exposure(*addr)?;
        }
        let mut endpoints = Vec::with_capacity(file.endpoints.len());
        for endpoint in &file.endpoints {
            let probe = endpoint.probe.then_some(ProbeSpec {
                interval: endpoint.probe_interval,
                timeout: endpoint.probe_timeout,
            });
            endpoints.push((
                EndpointSpec {
                    name: endpoint.name.clone(),
                    address: endpoint.address.clone(),
                },
                probe,
            ));
        }
        Ok(AgentConfig {
            report_interval,
            rx_hook,
            notify_manager: true,
            interfaces,
            event_buffer: self.event_buffer.unwrap_or(file.agent.netlink_event_buffer),
            run_as: run_as(self.user.as_deref().or(file.agent.user.as_deref()))?,
            thresholds: file.thresholds.clone(),
            evidence_on_demand: self
                .evidence_on_demand
                .unwrap_or(file.agent.evidence_on_demand),
            endpoints,
            socket: Some(ServerOptions {
                path: settings.socket.clone(),
                mode: file.socket.mode,
                group: file.socket.group.clone(),
            }),
            metrics,
            program_costs: self.program_costs.unwrap_or(file.metrics.program_costs),
            kernel_programs,
        })
    }
}

/// The user to become: the one named, else `netwatch` if it exists, else `nobody`; `root`
/// (or running as another user already) means no switch.
fn run_as(named: Option<&str>) -> Result<Option<RunAs>, SettingsError> {
    let lookup = |name: &str| {
        netwatch_client::accounts::user(name).map_err(|source| SettingsError::LookupUser {
            user: name.to_string(),
            source,
        })
    };
    let name = match named {
        Some("root") => return Ok(None),
        Some(name) => name.to_string(),
        None if lookup("netwatch")?.is_some() => "netwatch".to_string(),
        None => "nobody".to_string(),
    };
    let (uid, gid) = lookup(&name)?.ok_or_else(|| SettingsError::NoSuchUser(name.clone()))?;
    Ok(Some(RunAs { name, uid, gid }))
}

/// One interface pattern; an empty one (from `''`) matches no name.
fn parse_pattern(text: &str) -> Result<glob::Pattern, String> {
    InterfaceSelection::patterns(&[text.trim()])
        .map(|mut patterns| patterns.remove(0))
        .map_err(|e| e.to_string())
}

fn parse_metrics(text: &str) -> Result<MetricsFlag, String> {
    if text == "off" {
        return Ok(MetricsFlag::Off);
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("`{text}`: expected a loopback address like 127.0.0.1:9477, or `off`")
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`{text}` is not a loopback address: the flag serves metrics only on this host (127.0.0.1 or [::1]); off loopback, set [metrics] listen and web_config in the configuration file"
        ));
    }
    Ok(MetricsFlag::Listen(addr))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        settings::{self, Environment},
    };
    use netwatch_client::paths::DEFAULT_SOCKET_PATH;
    use std::path::PathBuf;

    /// The agent's settings from `argv`, in an environment with no variables and no system
    /// configuration file.
    fn resolve(argv: &[&str]) -> Result<AgentConfig, SettingsError> {
        let mut full = vec!["netwatch", "agent"];
        full.extend_from_slice(argv);
        let command = Cli::try_parse_from(full).expect("valid arguments").command;
        let settings = settings::resolve(&command.path_flags(), &Environment::empty())?;
        match command {
            Command::Agent(args) => args.resolve(&settings, &[]),
            _ => panic!("parsed as another command"),
        }
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write config");
        file
    }

    #[test]
    fn built_in_defaults_without_flags_or_file() {
        let config = resolve(&[]).unwrap();
        assert_eq!(config.report_interval, Some(Duration::from_secs(5)));
        assert_eq!(config.rx_hook, RxHook::Tc);
        let socket = config.socket.unwrap();
        assert_eq!(socket.path, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(socket.mode, 0o666);
        assert_eq!(
            config.metrics,
            Some(MetricsListen {
                addr: DEFAULT_METRICS_LISTEN,
                required: false,
                web: None,
            })
        );
        assert!(
            config.endpoints.is_empty(),
            "no endpoint is probed by default"
        );
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = config_file(
            "[agent]\nreport_interval = \"2s\"\nxdp_mode = \"native\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
        );
        let path = file.path().to_str().unwrap();
        let from_file = resolve(&["--config", path]).unwrap();
        assert_eq!(from_file.report_interval, Some(Duration::from_secs(2)));
        assert_eq!(from_file.rx_hook, RxHook::Xdp(XdpMode::Native));
        assert!(
            from_file.metrics.unwrap().required,
            "a configured address is required"
        );
        let flagged = resolve(&[
            "--config",
            path,
            "--report-interval",
            "0",
            "--xdp-mode",
            "generic",
            "--metrics",
            "off",
        ])
        .unwrap();
        assert_eq!(flagged.report_interval, None);
        assert_eq!(flagged.rx_hook, RxHook::Xdp(XdpMode::Generic));
        assert_eq!(flagged.metrics, None);
        let tc = resolve(&["--config", path, "--rx-hook", "tc"]).unwrap();
        assert_eq!(tc.rx_hook, RxHook::Tc, "--rx-hook tc wins over an xdp_mode");
    }

    #[test]
    fn a_namespaced_agent_gets_a_socket_of_its_own() {
        let config = resolve(&["--netns", "lab"]).unwrap();
        assert_eq!(
            config.socket.unwrap().path,
            PathBuf::from("/run/netwatch/netns-lab.sock")
        );
        let config = resolve(&["--netns", "lab", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(config.socket.unwrap().path, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn endpoints_from_the_file_with_probes_only_where_asked() {
        let file = config_file(
            "[[endpoint]]\nname = \"a\"\naddress = \"198.18.0.2:80\"\n\n[[endpoint]]\nname = \"b\"\naddress = \"[fd00:6e77::2]:443\"\nprobe = true\n",
        );
        let config = resolve(&["--config", file.path().to_str().unwrap()]).unwrap();
        let names: Vec<_> = config
            .endpoints
            .iter()
            .map(|(e, p)| (e.name.as_str(), p.is_some()))
            .collect();
        assert_eq!(names, [("a", false), ("b", true)]);
        assert_eq!(
            config.endpoints[1].0.address,
            "[fd00:6e77::2]:443".parse().unwrap()
        );
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let error = resolve(&["--config", "/nonexistent/netwatch.toml"]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/netwatch.toml"),
            "{error}"
        );
    }

    #[test]
    fn metrics_flag_refuses_other_hosts() {
        let error =
            Cli::try_parse_from(["netwatch", "agent", "--metrics", "0.0.0.0:9477"]).unwrap_err();
        assert!(
            error.to_string().contains("not a loopback address"),
            "{error}"
        );
    }

    #[test]
    fn a_duration_without_unit_is_refused_with_the_expected_form() {
        let error =
            Cli::try_parse_from(["netwatch", "agent", "--report-interval", "5"]).unwrap_err();
        assert!(
            error.to_string().contains("expected a duration like"),
            "{error}"
        );
    }
}
