//! Reads the TOML tree (with the span of every key and value) into a `Config`, so that every
//! refusal can point at the line it is about. Walking the tree by hand rather than through
//! serde is what lets unknown keys get a suggestion and checks across keys get a line.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use toml::{
    de::{DeTable, DeValue},
    Spanned,
};

use super::{
    table::{Doc, Table},
    AgentSettings, CacheSettings, Config, ConfigError, EndpointAddress, EndpointConfig,
    MetricsSettings, MirrorConfig, RxHookName, SocketSettings,
};
use glob::Pattern;
use netwatch_agent::daemon::InterfaceSelection;

use crate::{
    ebpf::XdpMode,
    state::Thresholds,
    transfer::{Compression, MirrorUrl, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL},
};

pub(super) const AGENT_KEYS: &[&str] = &[
    "report_interval",
    "rx_hook",
    "xdp_mode",
    "netlink_event_buffer",
    "evidence_on_demand",
    "user",
];
pub(super) const SOCKET_KEYS: &[&str] = &["path", "mode", "group"];
pub(super) const INTERFACE_KEYS: &[&str] = &["include", "exclude"];
pub(super) const METRICS_KEYS: &[&str] = &["enabled", "listen", "program_costs", "web_config"];
pub(super) const CACHE_KEYS: &[&str] = &["max_size"];
pub(super) const THRESHOLD_KEYS: &[&str] = &[
    "evidence_window",
    "loss_window",
    "degraded_retransmit_ratio",
    "recovered_retransmit_ratio",
    "min_retransmits",
    "flap_changes",
    "flap_window",
    "recovery_hold",
    "blackhole_timeouts",
    "rx_stall",
];
pub(super) const ENDPOINT_KEYS: &[&str] = &[
    "name",
    "address",
    "probe",
    "probe_interval",
    "probe_timeout",
];
pub(super) const MIRROR_KEYS: &[&str] = &[
    "name",
    "region",
    "priority",
    "url",
    "compression",
    "endpoint",
];
const TOP_KEYS: &[&str] = &[
    "agent",
    "interfaces",
    "socket",
    "metrics",
    "thresholds",
    "cache",
    "endpoint",
    "mirror",
];

/// Every table with its keys, as messages name them.
pub(super) const TABLES: &[(&str, &[&str])] = &[
    ("the top level", TOP_KEYS),
    ("[agent]", AGENT_KEYS),
    ("[interfaces]", INTERFACE_KEYS),
    ("[socket]", SOCKET_KEYS),
    ("[metrics]", METRICS_KEYS),
    ("[thresholds]", THRESHOLD_KEYS),
    ("[cache]", CACHE_KEYS),
    ("[[endpoint]]", ENDPOINT_KEYS),
    ("[[mirror]]", MIRROR_KEYS),
];

/// `sun_path` holds 108 bytes with the terminating NUL (unix(7)).
const MAX_SOCKET_PATH: usize = 107;

/// The error for `key` of `[table]` in a file that parsed, for a check only its user can make
/// (the agent's: does the socket's group exist here?), at the value's line and column.
pub(super) fn invalid_value(
    text: &str,
    origin: &Path,
    table: &'static str,
    key: &'static str,
    expected: String,
) -> Option<ConfigError> {
    let doc = Doc { text, origin };
    let root = DeTable::parse(text).ok()?;
    let top = top_level(&doc, &root).ok()?;
    let (header, keys) = TABLES
        .iter()
        .find(|(name, _)| name.trim_matches(['[', ']']) == table)?;
    let table = top.table(table, header, keys).ok()?;
    Some(table.invalid(key, expected))
}

pub(super) fn config(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let doc = Doc { text, origin };
    let root = DeTable::parse(text).map_err(|toml| ConfigError::Syntax {
        at: doc.at(toml.span().map_or(0, |span| span.start)),
        toml: Box::new(toml),
    })?;
    let top = top_level(&doc, &root)?;
    let endpoints = endpoints(&top)?;
    Ok(Config {
        agent: agent(&top.table("agent", "[agent]", AGENT_KEYS)?)?,
        interfaces: interfaces(&top.table("interfaces", "[interfaces]", INTERFACE_KEYS)?)?,
        socket: socket(&top.table("socket", "[socket]", SOCKET_KEYS)?)?,
        metrics: metrics(&top.table("metrics", "[metrics]", METRICS_KEYS)?)?,
        thresholds: thresholds(&top.table("thresholds", "[thresholds]", THRESHOLD_KEYS)?)?,
        cache: cache(&top.table("cache", "[cache]", CACHE_KEYS)?)?,
        mirrors: mirrors(&top, &endpoints)?,
        endpoints,
    })
}

/// The file's top level, which may hold only the known tables.
fn top_level<'a>(
    doc: &'a Doc<'a>,
    root: &'a Spanned<DeTable<'a>>,
) -> Result<Table<'a>, ConfigError> {
    Table::new(
        doc,
        "the top level",
        TOP_KEYS,
        root.span(),
        Some(root.get_ref()),
    )
}

/// A user name as useradd takes it (and "root" to stay root).
fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn agent(table: &Table) -> Result<AgentSettings, ConfigError> {
    const USER: &str = "a user name, like \"netwatch\" or \"nobody\" (\"root\" to stay root)";
    const XDP_MODE: &str = "\"generic\" or \"native\"";
    const RX_HOOK: &str = "\"xdp\" or \"tc\"";
    const BUFFER: &str = "a size in bytes from 1 to 1073741824 (1 GiB), like 4194304 (4 MiB)";
    let defaults = AgentSettings::default();
    let xdp_mode = match table.string("xdp_mode", XDP_MODE)? {
        None => defaults.xdp_mode,
        Some("generic") => XdpMode::Generic,
        Some("native") => XdpMode::Native,
        Some(_) => return Err(table.invalid("xdp_mode", XDP_MODE)),
    };
    let rx_hook = match table.string("rx_hook", RX_HOOK)? {
        // A file that names an XDP mode (written before the hook could be chosen) means XDP.
        None if table.string("xdp_mode", XDP_MODE)?.is_some() => RxHookName::Xdp,
        None => defaults.rx_hook,
        Some("xdp") => RxHookName::Xdp,
        Some("tc") => RxHookName::Tc,
        Some(_) => return Err(table.invalid("rx_hook", RX_HOOK)),
    };
    let buffer = table.integer("netlink_event_buffer", BUFFER)?;
    Ok(AgentSettings {
        report_interval: match table.duration("report_interval")? {
            None => defaults.report_interval,
            Some(every) if every.is_zero() => None,
            Some(every) => Some(every),
        },
        rx_hook,
        xdp_mode,
        netlink_event_buffer: match buffer.map(usize::try_from) {
            None => defaults.netlink_event_buffer,
            Some(Ok(bytes)) if (1..=1 << 30).contains(&bytes) => bytes,
            Some(_) => return Err(table.invalid("netlink_event_buffer", BUFFER)),
        },
        evidence_on_demand: table
            .boolean("evidence_on_demand")?
            .unwrap_or(defaults.evidence_on_demand),
        user: match table.string("user", USER)? {
            None => defaults.user,
            Some(name) if is_user_name(name) => Some(name.to_string()),
            Some(_) => return Err(table.invalid("user", USER)),
        },
    })
}

fn interfaces(table: &Table) -> Result<InterfaceSelection, ConfigError> {
    const PATTERNS: &str = "a list of interface names or globs, like [\"eth*\", \"en*\"]";
    let patterns = |key| -> Result<Option<Vec<Pattern>>, ConfigError> {
        let Some(texts) = table.strings(key, PATTERNS)? else {
            return Ok(None);
        };
        InterfaceSelection::patterns(&texts).map(Some).map_err(|e| {
            let expected = format!(
                "interface names or globs like \"eth*\"; `{}` is not one ({})",
                e.pattern, e.reason
            );
            table.invalid(key, expected)
        })
    };
    let defaults = InterfaceSelection::default();
    Ok(InterfaceSelection {
        include: patterns("include")?.unwrap_or(defaults.include),
        exclude: patterns("exclude")?.unwrap_or(defaults.exclude),
    })
}

fn socket(table: &Table) -> Result<SocketSettings, ConfigError> {
    const PATH: &str =
        "an absolute path of at most 107 bytes, like \"/run/netwatch/netwatch.sock\"";
    const MODE: &str =
        "permission bits in octal, in quotes, from \"0000\" to \"0777\", like \"0660\"";
    const GROUP: &str = "a group name like \"netwatch\"";
    let defaults = SocketSettings::default();
    let path = match table.string("path", PATH)? {
        None => defaults.path,
        Some(path) if path.starts_with('/') && path.len() <= MAX_SOCKET_PATH => Some(path.into()),
        Some(_) => return Err(table.invalid("path", PATH)),
    };
    let mode = match table.get("mode").map(|value| value.get_ref()) {
        None => defaults.mode,
        Some(DeValue::String(text)) => {
            let digits = text.strip_prefix("0o").unwrap_or(text);
            match u32::from_str_radix(digits, 8) {
                Ok(mode) if mode <= 0o777 && !digits.starts_with('+') => mode,
                _ => return Err(table.invalid("mode", MODE)),
            }
        }
        // TOML's own octal (`0o660`) says what it means; a decimal 660 would not.
        Some(DeValue::Integer(int)) if int.radix() == 8 => {
            match u32::from_str_radix(int.as_str(), 8) {
                Ok(mode) if mode <= 0o777 => mode,
                _ => return Err(table.invalid("mode", MODE)),
            }
        }
        Some(_) => return Err(table.invalid("mode", MODE)),
    };
    let group = match table.string("group", GROUP)? {
        None => None,
        Some(name)
            if !name.is_empty()
                && !name.contains([':', '/'])
                && !name.contains(char::is_whitespace) =>
        {
            Some(name.to_string())
        }
        Some(_) => return Err(table.invalid("group", GROUP)),
    };
    Ok(SocketSettings { path, mode, group })
}

fn metrics(table: &Table) -> Result<MetricsSettings, ConfigError> {
    const LISTEN: &str = "an address and port like \"127.0.0.1:9477\" or \"[::1]:9477\"";
    const WEB_CONFIG: &str = "an absolute path to a web configuration file (YAML, as \
                              Prometheus exporters read it: tls_server_config, basic_auth_users)";
    let enabled = table.boolean("enabled")?.unwrap_or(true);
    let web_config = match table.string("web_config", WEB_CONFIG)? {
        None => None,
        Some(text) if Path::new(text).is_absolute() => Some(PathBuf::from(text)),
        Some(_) => return Err(table.invalid("web_config", WEB_CONFIG)),
    };
    let listen = match table.string("listen", LISTEN)? {
        None => MetricsSettings::default().listen,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => {
                return Err(table.invalid(
                    "listen",
                    "a port from 1 to 65535: Prometheus must know where to scrape",
                ))
            }
            // Off loopback only behind a web configuration, which the agent checks guards it.
            Ok(addr) if addr.ip().is_loopback() || web_config.is_some() => Some(addr),
            Ok(_) => {
                let (at, value) = table.place("listen");
                return Err(ConfigError::NotLoopback { at, value });
            }
            Err(_) => return Err(table.invalid("listen", LISTEN)),
        },
    };
    Ok(MetricsSettings {
        listen: listen.filter(|_| enabled),
        program_costs: table.boolean("program_costs")?.unwrap_or(false),
        web_config,
    })
}

fn cache(table: &Table) -> Result<CacheSettings, ConfigError> {
    const SIZE: &str = "a size like \"10GiB\" or \"500MB\", or \"none\" for no cap";
    let max_size = match table.string("max_size", SIZE)? {
        None => CacheSettings::default().max_size,
        Some("none") => None,
        Some(text) => Some(
            crate::size::parse_size(text)
                .ok()
                .filter(|size| *size > 0)
                .ok_or_else(|| table.invalid("max_size", SIZE))?,
        ),
    };
    Ok(CacheSettings { max_size })
}

fn thresholds(table: &Table) -> Result<Thresholds, ConfigError> {
    const AT_LEAST_ONE: &str = "a whole number of at least 1, like 2";
    const COUNT: &str = "a whole number, like 3";
    let d = Thresholds::default();
    let count = |key, min: u64, expected| -> Result<Option<u64>, ConfigError> {
        match table.integer(key, expected)? {
            Some(n) if n < min => Err(table.invalid(key, expected)),
            n => Ok(n),
        }
    };
    let flap_changes = match count("flap_changes", 1, AT_LEAST_ONE)?.map(u32::try_from) {
        None => d.flap_changes,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(table.invalid("flap_changes", AT_LEAST_ONE)),
    };
    const AT_LEAST_TWO: &str = "a whole number of at least 2, like 3";
    let blackhole_timeouts = match count("blackhole_timeouts", 2, AT_LEAST_TWO)?.map(u32::try_from)
    {
        None => d.blackhole_timeouts,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(table.invalid("blackhole_timeouts", AT_LEAST_TWO)),
    };
    let window = |key, default| table.positive_duration(key).map(|v| v.unwrap_or(default));
    let ratio = |key, default| table.ratio(key).map(|v| v.unwrap_or(default));
    let thresholds = Thresholds {
        evidence_window: window("evidence_window", d.evidence_window)?,
        loss_window: window("loss_window", d.loss_window)?,
        degraded_retransmit_ratio: ratio("degraded_retransmit_ratio", d.degraded_retransmit_ratio)?,
        recovered_retransmit_ratio: ratio(
            "recovered_retransmit_ratio",
            d.recovered_retransmit_ratio,
        )?,
        min_retransmits: count("min_retransmits", 0, COUNT)?.unwrap_or(d.min_retransmits),
        flap_changes,
        flap_window: window("flap_window", d.flap_window)?,
        recovery_hold: table.duration("recovery_hold")?.unwrap_or(d.recovery_hold),
        blackhole_timeouts,
        rx_stall: window("rx_stall", d.rx_stall)?,
    };
    let (enter, leave) = (
        thresholds.degraded_retransmit_ratio,
        thresholds.recovered_retransmit_ratio,
    );
    if leave >= enter {
        // Hysteresis needs a gap: leaving at or above the entry ratio would toggle the verdict.
        return Err(if table.get("recovered_retransmit_ratio").is_some() {
            let expected = format!(
                "a ratio below degraded_retransmit_ratio ({enter}): Degraded is left at a \
                 lower loss than it is entered at"
            );
            table.invalid("recovered_retransmit_ratio", expected)
        } else {
            let expected = format!(
                "a ratio above recovered_retransmit_ratio ({leave}): Degraded is entered at a \
                 higher loss than it is left at"
            );
            table.invalid("degraded_retransmit_ratio", expected)
        });
    }
    Ok(thresholds)
}

fn endpoints(top: &Table) -> Result<Vec<EndpointConfig>, ConfigError> {
    named_tables(top, "[[endpoint]]", ENDPOINT_KEYS, endpoint, |e| &e.name)
}

/// Every table of an array like `[[mirror]]` (its `header`), each read by `read`, no two
/// with the same name.
fn named_tables<T>(
    top: &Table,
    header: &'static str,
    keys: &[&str],
    read: impl Fn(&Table) -> Result<T, ConfigError>,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, ConfigError> {
    let key = header.trim_matches(['[', ']']);
    let not_tables = || {
        top.invalid(
            key,
            format!("one {header} table (double brackets) per {key}"),
        )
    };
    let Some(value) = top.get(key) else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err(not_tables());
    };
    let mut first_line = HashMap::new();
    let mut all = Vec::with_capacity(items.len());
    for item in items.iter() {
        let DeValue::Table(entries) = item.get_ref() else {
            return Err(not_tables());
        };
        let table = Table::new(top.doc, header, keys, item.span(), Some(entries))?;
        let one = read(&table)?;
        let line = table.place("name").0.line;
        if let Some(first_line) = first_line.insert(name(&one).to_string(), line) {
            let (at, value) = table.place("name");
            return Err(ConfigError::DuplicateName {
                at,
                value,
                table: header,
                first_line,
            });
        }
        all.push(one);
    }
    Ok(all)
}

fn endpoint(table: &Table) -> Result<EndpointConfig, ConfigError> {
    const NAME: &str = "a name in quotes, like \"mirror\"";
    const ADDRESS: &str =
        "address = \"host:port\", like \"198.18.0.2:8080\" or \"mirror.example:443\"";
    let name = match table.string("name", NAME)? {
        None => return Err(table.missing("name", "name = \"NAME\", unique among endpoints")),
        Some("") => return Err(table.invalid("name", "a name that is not empty, like \"mirror\"")),
        Some(name) => name.to_string(),
    };
    let address = match table.string("address", ADDRESS)? {
        None => return Err(table.missing("address", ADDRESS)),
        Some(text) => text
            .parse::<EndpointAddress>()
            .map_err(|error| table.invalid("address", error.expected))?,
    };
    let probe_interval = table
        .positive_duration("probe_interval")?
        .unwrap_or(super::DEFAULT_PROBE_INTERVAL);
    let probe_timeout = table
        .positive_duration("probe_timeout")?
        .unwrap_or(super::DEFAULT_PROBE_TIMEOUT);
    if probe_timeout >= probe_interval {
        // A probe still waiting when the next is due would overlap it.
        let show = humantime::format_duration;
        return Err(if table.get("probe_timeout").is_some() {
            table.invalid(
                "probe_timeout",
                format!(
                    "a duration shorter than probe_interval ({})",
                    show(probe_interval)
                ),
            )
        } else {
            table.invalid(
                "probe_interval",
                format!(
                    "a duration longer than probe_timeout ({})",
                    show(probe_timeout)
                ),
            )
        });
    }
    Ok(EndpointConfig {
        name,
        address,
        probe: table.boolean("probe")?.unwrap_or(false),
        probe_interval,
        probe_timeout,
    })
}

fn mirrors(top: &Table, endpoints: &[EndpointConfig]) -> Result<Vec<MirrorConfig>, ConfigError> {
    let read = |table: &Table| mirror(table, endpoints);
    named_tables(top, "[[mirror]]", MIRROR_KEYS, read, |m| &m.name)
}

fn mirror(table: &Table, endpoints: &[EndpointConfig]) -> Result<MirrorConfig, ConfigError> {
    const NAME: &str = "a name of letters, digits, `-`, `_` and `.`, like \"eu-central\"";
    const REGION: &str = "a region label in quotes, like \"eu-central-1\"";
    const PRIORITY: &str = "a whole number from 0 to 1000, like 1 (lower is tried first)";
    const URL: &str = "url = \"s3://BUCKET/PREFIX\", \"az://CONTAINER/PREFIX\", \"gs://BUCKET/PREFIX\", \"https://HOST/PATH\", \"sftp://USER@HOST/PATH\" or \"file:///PATH\"";
    const COMPRESSION: &str = "\"auto\", \"zstd\", \"gzip\" or \"none\"";
    let name = match table.string("name", NAME)? {
        None => return Err(table.missing("name", "name = \"NAME\", unique among mirrors")),
        Some(name)
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            name.to_string()
        }
        Some(_) => return Err(table.invalid("name", NAME)),
    };
    let region = match table.string("region", REGION)? {
        Some("") => return Err(table.invalid("region", REGION)),
        region => region.map(str::to_string),
    };
    let priority = match table.integer("priority", PRIORITY)? {
        None => super::DEFAULT_MIRROR_PRIORITY,
        Some(priority @ 0..=1000) => priority as u32,
        Some(_) => return Err(table.invalid("priority", PRIORITY)),
    };
    let url = match table.string("url", URL)? {
        None => return Err(table.missing("url", URL)),
        Some(text) => text
            .parse::<MirrorUrl>()
            .map_err(|error| table.invalid("url", error.expected))?,
    };
    let compression = match table.string("compression", COMPRESSION)? {
        None | Some("auto") => Compression::Auto,
        Some("zstd") => Compression::Zstd(DEFAULT_ZSTD_LEVEL),
        Some("gzip") => Compression::Gzip(DEFAULT_GZIP_LEVEL),
        Some("none") => Compression::None,
        Some(_) => return Err(table.invalid("compression", COMPRESSION)),
    };
    let endpoint = match table.string("endpoint", "the name of an [[endpoint]], in quotes")? {
        None => super::link::endpoint_for(&url, endpoints),
        Some(name) if endpoints.iter().any(|e| e.name == name) => Some(name.to_string()),
        Some(_) if endpoints.is_empty() => {
            return Err(table.invalid(
                "endpoint",
                "the name of an [[endpoint]] table, but this file has none: add the \
                 [[endpoint]] whose verdict is this mirror's health, or leave `endpoint` out",
            ))
        }
        Some(_) => {
            let known: Vec<String> = endpoints
                .iter()
                .map(|e| format!("\"{}\"", e.name))
                .collect();
            return Err(table.invalid(
                "endpoint",
                format!(
                    "the name of an [[endpoint]] in this file: {}",
                    known.join(", ")
                ),
            ));
        }
    };
    Ok(MirrorConfig {
        name,
        region,
        priority,
        url,
        compression,
        endpoint,
    })
}
