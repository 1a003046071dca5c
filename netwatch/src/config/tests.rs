use std::{error::Error, net::SocketAddr, path::Path, time::Duration};

use super::{read::TABLES, CacheSettings, *};
use netwatch_agent::daemon::InterfaceSelection;
use netwatch_transfer::{Compression, MirrorUrl};

const ORIGIN: &str = "/etc/netwatch.toml";
const EXAMPLE: &str = include_str!("../../../docs/netwatch.example.toml");
const DOCS: &str = include_str!("../../../docs/config.md");

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("refused: {}", chain(&e)))
}

/// The message as the binary prints it (`{:#}`): the error, then each source.
fn chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

fn refused(text: &str) -> String {
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(config) => panic!("accepted {text:?} as {config:?}"),
        Err(error) => chain(&error),
    }
}

/// Asserts the message names the file and the place, and says what was expected.
fn assert_refused(text: &str, place: &str, expected: &str) {
    let message = refused(text);
    let after = message.strip_prefix(&format!("{ORIGIN} {place}"));
    assert!(
        after.is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(", column")),
        "{message:?} does not start with the file and {place:?}"
    );
    assert!(
        message.contains(expected),
        "{message:?} does not say {expected:?}"
    );
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn an_empty_file_gives_every_default() {
    let config = parse("# nothing set\n");
    assert_eq!(config, Config::default());
    assert_eq!(config.agent.report_interval, Some(secs(5)));
    assert_eq!(config.agent.rx_hook, RxHookName::Tc);
    assert_eq!(config.agent.xdp_mode, XdpMode::Generic);
    assert_eq!(
        config.agent.netlink_event_buffer,
        netwatch_agent::netlink::DEFAULT_EVENT_BUFFER
    );
    assert_eq!(config.socket.path, None);
    assert_eq!(config.socket.mode, 0o666);
    assert_eq!(config.socket.group, None);
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9477".parse().unwrap())
    );
    assert_eq!(config.thresholds, Thresholds::default());
    assert!(config.endpoints.is_empty());
}

#[test]
fn the_example_file_parses_to_what_it_says() {
    let expected = Config {
        cache: CacheSettings {
            max_size: Some(20 << 30),
        },
        agent: AgentSettings {
            report_interval: Some(secs(30)),
            rx_hook: RxHookName::Tc,
            xdp_mode: XdpMode::Generic,
            netlink_event_buffer: 8 << 20,
            evidence_on_demand: true,
            user: Some("netwatch".into()),
        },
        interfaces: InterfaceSelection::from_patterns(
            &["eth*", "en*", "wl*", "bond*", "br0"],
            &["veth*", "docker*", "br-*", "cni*"],
        )
        .unwrap(),
        socket: SocketSettings {
            path: Some("/run/netwatch/netwatch.sock".into()),
            mode: 0o660,
            group: Some("netwatch".into()),
        },
        metrics: MetricsSettings {
            listen: Some("127.0.0.1:9478".parse().unwrap()),
            program_costs: true,
            web_config: Some("/etc/netwatch/web.yml".into()),
        },
        thresholds: Thresholds {
            degraded_retransmit_ratio: 0.03,
            recovered_retransmit_ratio: 0.01,
            recovery_hold: secs(5),
            ..Thresholds::default()
        },
        endpoints: vec![
            EndpointConfig {
                name: "mirror".into(),
                address: EndpointAddress::Host {
                    host: "mirror.example".into(),
                    port: 443,
                },
                probe: true,
                probe_interval: secs(15),
                probe_timeout: secs(2),
            },
            EndpointConfig {
                name: "storage".into(),
                address: EndpointAddress::Ip("[fd00::2]:443".parse().unwrap()),
                probe: false,
                probe_interval: secs(10),
                probe_timeout: secs(3),
            },
            EndpointConfig {
                name: "build-cache".into(),
                address: EndpointAddress::Ip("198.18.0.2:8080".parse().unwrap()),
                probe: false,
                probe_interval: secs(10),
                probe_timeout: secs(3),
            },
        ],
        mirrors: vec![
            MirrorConfig {
                name: "eu-central".into(),
                region: Some("eu-central-1".into()),
                priority: 1,
                url: MirrorUrl::S3 {
                    bucket: "build-cache".into(),
                    prefix: "netwatch".into(),
                },
                compression: Compression::Auto,
                endpoint: Some("storage".into()),
            },
            MirrorConfig {
                name: "office".into(),
                region: None,
                priority: 2,
                url: MirrorUrl::Http {
                    url: "https://mirror.example/dav/netwatch".into(),
                },
                compression: Compression::Auto,
                // Linked by its URL's host and port.
                endpoint: Some("mirror".into()),
            },
            MirrorConfig {
                name: "nfs".into(),
                region: None,
                priority: DEFAULT_MIRROR_PRIORITY,
                url: MirrorUrl::File {
                    path: "/srv/netwatch-mirror".into(),
                },
                compression: Compression::Gzip(6),
                endpoint: None,
            },
        ],
    };
    assert_eq!(parse(EXAMPLE), expected);
}

#[test]
fn the_example_and_the_docs_name_every_key() {
    for (table, keys) in TABLES {
        for key in *keys {
            let set = EXAMPLE
                .lines()
                .any(|line| line.starts_with(&format!("{key} =")))
                || EXAMPLE.contains(&format!("[{key}]"));
            assert!(
                set,
                "docs/netwatch.example.toml does not set `{key}` ({table})"
            );
            let described = DOCS.contains(&format!("`{key}`"))
                || DOCS.contains(&format!("## `[{key}]`"))
                || DOCS.contains(&format!("## `[[{key}]]`"));
            assert!(
                described,
                "docs/config.md does not describe `{key}` ({table})"
            );
        }
    }
}

#[test]
fn an_xdp_mode_alone_asks_for_the_xdp_hook() {
    let config = parse("[agent]\nxdp_mode = \"native\"\n");
    assert_eq!(config.agent.rx_hook, RxHookName::Xdp);
    assert_eq!(config.agent.xdp_mode, XdpMode::Native);
    let config = parse("[agent]\nrx_hook = \"tc\"\nxdp_mode = \"native\"\n");
    assert_eq!(config.agent.rx_hook, RxHookName::Tc, "rx_hook wins");
}

#[test]
fn a_file_setting_every_key_overrides_every_default() {
    let config = parse(
        r#"
        [agent]
        report_interval = "0s"
        rx_hook = "xdp"
        xdp_mode = "native"
        netlink_event_buffer = 65536
        evidence_on_demand = false
        user = "nobody"
        [socket]
        path = "/tmp/nw.sock"
        mode = 0o600
        group = "adm"
        [metrics]
        enabled = false
        listen = "[::1]:9100"
        program_costs = true
        [cache]
        max_size = "none"
        [thresholds]
        evidence_window = "20s"
        loss_window = "5s"
        degraded_retransmit_ratio = 0.1
        recovered_retransmit_ratio = 0.05
        min_retransmits = 10
        flap_changes = 6
        flap_window = "30s"
        recovery_hold = "0s"
        blackhole_timeouts = 4
        rx_stall = "2s"
        [[endpoint]]
        name = "db"
        address = "db.internal:5432"
        probe = true
        probe_interval = "1m"
        probe_timeout = "500ms"
        [[mirror]]
        name = "local"
        region = "rack-3"
        priority = 0
        url = "file:///srv/mirror"
        compression = "none"
        endpoint = "db"
        "#,
    );
    let expected = Config {
        cache: CacheSettings { max_size: None },
        agent: AgentSettings {
            report_interval: None,
            rx_hook: RxHookName::Xdp,
            xdp_mode: XdpMode::Native,
            netlink_event_buffer: 65536,
            evidence_on_demand: false,
            user: Some("nobody".into()),
        },
        interfaces: InterfaceSelection::default(),
        socket: SocketSettings {
            path: Some("/tmp/nw.sock".into()),
            mode: 0o600,
            group: Some("adm".into()),
        },
        metrics: MetricsSettings {
            listen: None,
            program_costs: true,
            web_config: None,
        },
        thresholds: Thresholds {
            evidence_window: secs(20),
            loss_window: secs(5),
            degraded_retransmit_ratio: 0.1,
            recovered_retransmit_ratio: 0.05,
            min_retransmits: 10,
            flap_changes: 6,
            flap_window: secs(30),
            recovery_hold: Duration::ZERO,
            blackhole_timeouts: 4,
            rx_stall: secs(2),
        },
        endpoints: vec![EndpointConfig {
            name: "db".into(),
            address: EndpointAddress::Host {
                host: "db.internal".into(),
                port: 5432,
            },
            probe: true,
            probe_interval: secs(60),
            probe_timeout: Duration::from_millis(500),
        }],
        mirrors: vec![MirrorConfig {
            name: "local".into(),
            region: Some("rack-3".into()),
            priority: 0,
            url: MirrorUrl::File {
                path: "/srv/mirror".into(),
            },
            compression: Compression::None,
            endpoint: Some("db".into()),
        }],
    };
    assert_eq!(config, expected);
}

#[test]
fn a_syntax_error_gives_the_line_and_what_the_parser_expected() {
    assert_refused(
        "[agent]\nreport_interval = 5s\n",
        "line 2, column 19",
        "not valid TOML: string values must be quoted, expected literal string",
    );
    assert_refused(
        "[agent\n",
        "line 1, column 7",
        "not valid TOML: unclosed table, expected `]`",
    );
    assert_refused(
        "[agent]\nxdp_mode = \"native\"\nxdp_mode = \"generic\"\n",
        "line 3, column 1",
        "duplicate key",
    );
}

#[test]
fn a_bad_duration_is_shown_as_written_with_the_expected_form() {
    let text = format!("{}[agent]\nreport_interval = \"5\"\n", "#\n".repeat(10));
    assert_eq!(
        refused(&text),
        "/etc/netwatch.toml line 12, column 19: report_interval = \"5\": expected a duration \
         like \"5s\" or \"500ms\": time unit needed, for example 5sec or 5ms"
    );
    assert_refused(
        "[thresholds]\nloss_window = 3\n",
        "line 2, column 15",
        "loss_window = 3: expected a duration in quotes, like \"5s\"",
    );
    assert_refused(
        "[[endpoint]]\nname = \"a\"\naddress = \"a.example:1\"\nprobe_interval = \"10 parsecs\"\n",
        "line 4, column 18",
        "expected a duration like \"5s\" or \"500ms\": unknown time unit \"parsecs\"",
    );
}

#[test]
fn a_value_of_the_wrong_type_says_what_the_key_takes() {
    assert_refused(
        "[agent]\nnetlink_event_buffer = \"4MiB\"\n",
        "line 2, column 24",
        "netlink_event_buffer = \"4MiB\": expected a size in bytes from 1 to 1073741824",
    );
    assert_refused(
        "[[endpoint]]\nname = \"a\"\naddress = \"a.example:1\"\nprobe = \"yes\"\n",
        "line 4, column 9",
        "probe = \"yes\": expected true or false",
    );
    assert_refused(
        "agent = 5\n",
        "line 1, column 9",
        "agent = 5: expected a table: a [agent] header followed by its keys",
    );
    assert_refused(
        "[agent]\nxdp_mode = \"driver\"\n",
        "line 2, column 12",
        "expected \"generic\" or \"native\"",
    );
}

#[test]
fn an_unknown_key_is_refused_with_the_nearest_known_one() {
    assert_eq!(
        refused("[agent]\nxdp_mod = \"native\"\n"),
        "/etc/netwatch.toml line 2, column 1: unknown key `xdp_mod` in [agent]; did you mean \
         `xdp_mode`?"
    );
    assert_refused(
        "[[endpoints]]\nname = \"a\"\n",
        "line 1, column 3",
        "unknown key `endpoints` in the top level; did you mean `endpoint`?",
    );
    assert_refused(
        "[agent]\nlisten = \"127.0.0.1:9477\"\n",
        "line 2, column 1",
        "unknown key `listen` in [agent]; did you mean to put it in [metrics]?",
    );
    assert_refused(
        "[socket]\nowner = \"root\"\n",
        "line 2, column 1",
        "unknown key `owner` in [socket]: expected one of `path`, `mode`, `group`",
    );
}

#[test]
fn a_metrics_address_off_loopback_is_refused_and_the_reason_given() {
    assert_refused(
        "[metrics]\nlisten = \"0.0.0.0:9477\"\n",
        "line 2, column 10",
        "listen = \"0.0.0.0:9477\": expected a loopback address like \"127.0.0.1:9477\" or \
         \"[::1]:9477\": off loopback the agent serves metrics only over TLS to scrapers that \
         authenticate, so set web_config",
    );
    assert_refused(
        "[metrics]\nlisten = \"localhost:9477\"\n",
        "line 2, column 10",
        "expected an address and port like \"127.0.0.1:9477\"",
    );
    assert_refused(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
        "line 2, column 10",
        "expected a port from 1 to 65535",
    );
    let v6: SocketAddr = "[::1]:9477".parse().unwrap();
    assert_eq!(
        parse("[metrics]\nlisten = \"[::1]:9477\"\n").metrics.listen,
        Some(v6)
    );
}

#[test]
fn a_metrics_address_off_loopback_is_taken_with_a_web_config_the_agent_then_checks() {
    let any: SocketAddr = "0.0.0.0:9477".parse().unwrap();
    let metrics =
        parse("[metrics]\nlisten = \"0.0.0.0:9477\"\nweb_config = \"/etc/nw/web.yml\"\n").metrics;
    assert_eq!(metrics.listen, Some(any));
    assert_eq!(metrics.web_config, Some("/etc/nw/web.yml".into()));
    assert_refused(
        "[metrics]\nweb_config = \"web.yml\"\n",
        "line 2, column 14",
        "web_config = \"web.yml\": expected an absolute path",
    );
}

#[test]
fn metrics_can_be_turned_off() {
    assert_eq!(parse("[metrics]\nenabled = false\n").metrics.listen, None);
}

#[test]
fn a_bad_endpoint_address_says_which_part_is_wrong() {
    let endpoint = |address: &str| format!("[[endpoint]]\nname = \"a\"\naddress = \"{address}\"\n");
    assert_refused(
        &endpoint("mirror.example"),
        "line 3, column 11",
        "address = \"mirror.example\": expected host:port, like \"198.18.0.2:8080\"",
    );
    assert_refused(
        &endpoint("198.18.0.2:0"),
        "line 3, column 11",
        "expected a port from 1 to 65535",
    );
    assert_refused(
        &endpoint("fd00::2:443"),
        "line 3, column 11",
        "expected an IPv6 address in brackets",
    );
    assert_refused(
        "[[endpoint]]\nname = \"a\"\n",
        "line 1, column 1",
        "[[endpoint]] has no `address`: expected address = \"host:port\"",
    );
}

#[test]
fn endpoint_names_must_be_present_unique_and_not_empty() {
    assert_eq!(
        refused(
            "[[endpoint]]\nname = \"mirror\"\naddress = \"a.example:1\"\n\n\
             [[endpoint]]\nname = \"mirror\"\naddress = \"b.example:1\"\n"
        ),
        "/etc/netwatch.toml line 6, column 8: name = \"mirror\": expected a name no other \
         [[endpoint]] has, but the one at line 2 has it"
    );
    assert_refused(
        "[[endpoint]]\nname = \"\"\naddress = \"a.example:1\"\n",
        "line 2, column 8",
        "name = \"\": expected a name that is not empty",
    );
    assert_refused(
        "\n[[endpoint]]\naddress = \"a.example:1\"\n",
        "line 2, column 1",
        "[[endpoint]] has no `name`: expected name = \"NAME\"",
    );
    assert_refused(
        "[endpoint]\nname = \"a\"\n",
        "line 1, column 1",
        "expected one [[endpoint]] table (double brackets) per endpoint",
    );
}

#[test]
fn a_probe_timeout_must_be_shorter_than_its_interval() {
    assert_refused(
        "[[endpoint]]\nname = \"a\"\naddress = \"a.example:1\"\nprobe_timeout = \"10s\"\n",
        "line 4, column 17",
        "probe_timeout = \"10s\": expected a duration shorter than probe_interval (10s)",
    );
    assert_refused(
        "[[endpoint]]\nname = \"a\"\naddress = \"a.example:1\"\nprobe_interval = \"2s\"\n",
        "line 4, column 18",
        "probe_interval = \"2s\": expected a duration longer than probe_timeout (3s)",
    );
}

#[test]
fn the_socket_mode_must_be_octal_permission_bits() {
    for (mode, column) in [
        ("\"0999\"", 8),
        ("\"1777\"", 8),
        ("\"rw-rw----\"", 8),
        ("660", 8),
    ] {
        assert_refused(
            &format!("[socket]\nmode = {mode}\n"),
            &format!("line 2, column {column}"),
            &format!("mode = {mode}: expected permission bits in octal"),
        );
    }
    for (mode, bits) in [("\"0660\"", 0o660), ("\"600\"", 0o600), ("0o640", 0o640)] {
        assert_eq!(
            parse(&format!("[socket]\nmode = {mode}\n")).socket.mode,
            bits
        );
    }
    assert_refused(
        "[socket]\npath = \"netwatch.sock\"\n",
        "line 2, column 8",
        "expected an absolute path",
    );
}

#[test]
fn thresholds_out_of_range_are_refused() {
    let threshold = |line: &str| format!("[thresholds]\n{line}\n");
    for line in [
        "degraded_retransmit_ratio = 1.5",
        "degraded_retransmit_ratio = 0.0",
        "recovered_retransmit_ratio = 1",
    ] {
        assert_refused(
            &threshold(line),
            "line 2",
            "expected a ratio between 0 and 1",
        );
    }
    assert_refused(
        &threshold("recovered_retransmit_ratio = 0.02"),
        "line 2, column 30",
        "expected a ratio below degraded_retransmit_ratio (0.02)",
    );
    assert_refused(
        &threshold("degraded_retransmit_ratio = 0.004"),
        "line 2, column 29",
        "expected a ratio above recovered_retransmit_ratio (0.005)",
    );
    for window in ["evidence_window", "loss_window", "flap_window", "rx_stall"] {
        assert_refused(
            &threshold(&format!("{window} = \"0s\"")),
            "line 2",
            "expected a duration above zero",
        );
    }
    assert_refused(
        &threshold("flap_changes = 0"),
        "line 2, column 16",
        "expected a whole number of at least 1",
    );
    assert_refused(
        &threshold("min_retransmits = -1"),
        "line 2, column 19",
        "expected a whole number",
    );
}

#[test]
fn a_missing_file_is_named_and_the_flag_called_optional() {
    let path = Path::new("/nonexistent/netwatch-test/netwatch.toml");
    let message = chain(&Config::load(path).unwrap_err());
    assert!(
        message.contains("config file /nonexistent/netwatch-test/netwatch.toml does not exist"),
        "{message}"
    );
    assert!(message.contains("--config, which is optional"));
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_refused(
        "# café\nagent = { report_interval = \"é\", xdp_mode = \"x\" }\n",
        "line 2, column 45",
        "xdp_mode = \"x\"",
    );
}

#[test]
fn mirrors_need_a_name_and_a_url_they_can_be_reached_by() {
    let mirror = |body: &str| format!("[[mirror]]\n{body}\n");
    assert_refused(
        &mirror("name = \"a\"\nurl = \"ftp://mirror.example/x\""),
        "line 3, column 7",
        "url = \"ftp://mirror.example/x\": expected \"s3://BUCKET/PREFIX\", \"az://CONTAINER/PREFIX\", \"gs://BUCKET/PREFIX\", \"https://HOST/PATH\" (WebDAV), \"sftp://USER@HOST/ABSOLUTE/PATH\" or \"file:///ABSOLUTE/PATH\"",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"https://user:pw@cache.example/\""),
        "line 3, column 7",
        "credentials come from the environment, never from the file",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"file://srv/mirror\""),
        "line 3, column 7",
        "expected an absolute path after file://",
    );
    assert_refused(
        &mirror("name = \"a\""),
        "line 1, column 1",
        "[[mirror]] has no `url`: expected url = \"s3://BUCKET/PREFIX\"",
    );
    assert_refused(
        &mirror("url = \"file:///m\""),
        "line 1, column 1",
        "[[mirror]] has no `name`",
    );
    assert_refused(
        &mirror("name = \"a b\"\nurl = \"file:///m\""),
        "line 2, column 8",
        "expected a name of letters, digits",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"file:///m\"\npriority = 1001"),
        "line 4, column 12",
        "priority = 1001: expected a whole number from 0 to 1000",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"file:///m\"\ncompression = \"lz4\""),
        "line 4, column 15",
        "expected \"auto\", \"zstd\", \"gzip\" or \"none\"",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"file:///m\"\nweight = 3"),
        "line 4, column 1",
        "unknown key `weight` in [[mirror]]: expected one of `name`, `region`, `priority`, `url`, `compression`, `endpoint`",
    );
    assert_refused(
        &mirror("name = \"a\"\nurl = \"file:///m\"\nprobe = true"),
        "line 4, column 1",
        "unknown key `probe` in [[mirror]]; did you mean to put it in [[endpoint]]?",
    );
    assert_eq!(
        refused("[[mirror]]\nname = \"a\"\nurl = \"file:///m\"\n[[mirror]]\nname = \"a\"\nurl = \"file:///n\"\n"),
        "/etc/netwatch.toml line 5, column 8: name = \"a\": expected a name no other [[mirror]] \
         has, but the one at line 2 has it"
    );
}

#[test]
fn a_mirror_endpoint_must_name_an_endpoint_of_the_file() {
    let endpoint = "[[endpoint]]\nname = \"cache\"\naddress = \"198.18.0.2:80\"\n";
    assert_refused(
        &format!("{endpoint}[[mirror]]\nname = \"a\"\nurl = \"file:///m\"\nendpoint = \"cahce\"\n"),
        "line 7, column 12",
        "endpoint = \"cahce\": expected the name of an [[endpoint]] in this file: \"cache\"",
    );
    assert_refused(
        "[[mirror]]\nname = \"a\"\nurl = \"file:///m\"\nendpoint = \"cache\"\n",
        "line 4, column 12",
        "but this file has none",
    );
    assert_refused(
        "[[mirror]]\nname = \"a\"\nurl = \"file:///m\"\nendpoint = 3\n",
        "line 4, column 12",
        "endpoint = 3: expected the name of an [[endpoint]], in quotes",
    );
    // Named, or found by the URL's host and port (80 for http), or none.
    let config = parse(&format!(
        "{endpoint}[[mirror]]\nname = \"a\"\nurl = \"file:///m\"\nendpoint = \"cache\"\n\
         [[mirror]]\nname = \"b\"\nurl = \"http://198.18.0.2/dav\"\n\
         [[mirror]]\nname = \"c\"\nurl = \"http://198.18.0.2:8080/dav\"\n"
    ));
    let linked: Vec<Option<&str>> = config
        .mirrors
        .iter()
        .map(|m| m.endpoint.as_deref())
        .collect();
    assert_eq!(linked, [Some("cache"), Some("cache"), None]);
}

#[test]
fn mirrors_are_tried_by_priority_then_file_order() {
    let config = parse(
        "[[mirror]]\nname = \"c\"\nurl = \"file:///c\"\n\
         [[mirror]]\nname = \"b\"\nurl = \"file:///b\"\npriority = 2\n\
         [[mirror]]\nname = \"a\"\nurl = \"file:///a\"\npriority = 2\n\
         [[mirror]]\nname = \"z\"\nurl = \"file:///z\"\npriority = 1\n",
    );
    let order: Vec<&str> = config
        .mirrors_by_priority()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(order, ["z", "b", "a", "c"]);
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_the_line_and_column_of_the_bad_byte() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, b"[agent]\nreport_interval = \"5s\xff\"\n").unwrap();
    let error = Config::load(file.path()).unwrap_err();
    let at = error.location().expect("a place in the file");
    assert_eq!((at.line, at.column), (2, 22), "{error}");
    assert!(error.to_string().contains("not UTF-8"), "{error}");
}

#[test]
fn a_value_its_user_finds_wrong_is_named_at_its_line() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut file,
        b"[socket]\nmode = \"0660\"\ngroup = \"nosuch\"\n",
    )
    .unwrap();
    let error = Config::invalid_value(file.path(), "socket", "group", "an existing group".into())
        .expect("the key is there");
    let text = error.to_string();
    assert!(
        text.contains("line 3, column 9") && text.contains("an existing group"),
        "{text}"
    );
}

#[test]
fn an_absurd_netlink_buffer_is_refused() {
    let error = refused("[agent]\nnetlink_event_buffer = 9223372036854775807\n");
    assert!(error.contains("from 1 to 1073741824"), "{error}");
}

#[test]
fn interfaces_take_patterns_and_an_empty_exclude_leaves_out_nothing() {
    let config = parse("[interfaces]\ninclude = [\"eth*\"]\nexclude = []\n");
    let expected = InterfaceSelection::from_patterns(&["eth*"], &[]).unwrap();
    assert_eq!(config.interfaces, expected);
    assert!(config.interfaces.chooses("eth0") && !config.interfaces.chooses("wlan0"));
    assert_eq!(parse("").interfaces, InterfaceSelection::default());
    let error = refused("[interfaces]\nexclude = [\"veth[\"]\n");
    assert!(
        error.contains("line 2") && error.contains("`veth[`"),
        "{error}"
    );
    let error = refused("[interfaces]\ninclude = \"eth0\"\n");
    assert!(
        error.contains("a list of interface names or globs"),
        "{error}"
    );
}

#[test]
fn only_a_regular_file_of_sane_size_is_read_and_a_fifo_is_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
    for (path, says) in [
        (dir.path().to_path_buf(), "is a directory"),
        (fifo, "is a FIFO"),
        (Path::new("/dev/zero").to_path_buf(), "is a device"),
        (big, "more than the 1048576"),
    ] {
        let message = chain(&Config::load(&path).unwrap_err());
        assert!(message.contains(says), "{}: {message}", path.display());
    }
}

#[test]
fn as_root_a_file_another_user_owns_or_may_write_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // The rule is root's; as another user there is nothing to show.
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netwatch.toml");
    std::fs::write(&path, "# nothing\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let message = chain(&Config::load(&path).unwrap_err());
    assert!(message.contains("writable by others"), "{message}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::chown(c_path.as_ptr(), 65534, u32::MAX) }, 0);
    let message = chain(&Config::load(&path).unwrap_err());
    assert!(message.contains("owned by uid 65534"), "{message}");
}
