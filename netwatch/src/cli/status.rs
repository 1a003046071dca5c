//! `netwatch status`: the agent's verdicts now, as tables or JSON.

use std::{borrow::Cow, path::Path, process::ExitCode};

use super::{
    format::{ago, bytes, table, Cell, Style},
    remote::{self, emit, stdout_is_terminal, CommandError},
    PathArgs,
};
use crate::{
    client::{Client, Clock},
    server::protocol::Reply,
    settings::Settings,
    state::{NetworkState, Verdict},
};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub paths: PathArgs,

    /// Print the protocol's `state` reply (the state with the agent's clocks) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_status(args: &StatusArgs, settings: &Settings) -> ExitCode {
    remote::run(status(args, &settings.socket))
}

async fn status(args: &StatusArgs, socket: &Path) -> Result<ExitCode, CommandError> {
    let mut client = Client::connect(socket).await?;
    let stamped = client.get_stamped().await?;
    let terminal = stdout_is_terminal();
    if args.json {
        let reply = Reply::State {
            at_unix_ms: stamped.clock.at_unix_ms,
            now_ns: stamped.clock.now_ns,
            state: Cow::Borrowed(&stamped.state),
        };
        let text = if terminal {
            serde_json::to_string_pretty(&reply)
        } else {
            serde_json::to_string(&reply)
        };
        emit(&text.map_err(|e| CommandError::Output(e.into()))?)?;
    } else {
        let style = Style { color: terminal };
        emit(render(&stamped.state, &stamped.clock, style).trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The state as people read it: the host's verdict, then a table of links and one of
/// endpoints.
pub fn render(state: &NetworkState, clock: &Clock, style: Style) -> String {
    let since = |verdict: &Verdict| ago(clock.age_of(verdict.since_ns));
    let mut out = format!(
        "host  {}  since {}  {}\n\n",
        style.health(state.host.health),
        since(&state.host),
        reasons(&state.host)
    );
    if state.links.is_empty() {
        out.push_str("no links\n");
    } else {
        let rows: Vec<Vec<Cell>> = state
            .links
            .values()
            .map(|link| {
                vec![
                    Cell::text(&link.name),
                    Cell::health(link.verdict.health),
                    Cell::text(since(&link.verdict)),
                    Cell::text(format!(
                        "{}/{}",
                        if link.admin_up { "up" } else { "down" },
                        if link.carrier { "yes" } else { "no" }
                    )),
                    Cell::text(bytes(link.rx_bytes)),
                    Cell::text(bytes(link.tx_bytes)),
                    Cell::text(link.retransmits.to_string()),
                    Cell::text(reasons(&link.verdict)),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "LINK",
                "VERDICT",
                "SINCE",
                "ADMIN/CARRIER",
                "RX",
                "TX",
                "RETRANSMITS",
                "REASONS",
            ],
            &rows,
            style,
        ));
    }
    out.push('\n');
    if state.endpoints.is_empty() {
        out.push_str("no endpoints configured\n");
    } else {
        let rows: Vec<Vec<Cell>> = state
            .endpoints
            .values()
            .map(|endpoint| {
                vec![
                    Cell::text(&endpoint.name),
                    Cell::text(&endpoint.address),
                    Cell::text(endpoint.via.as_deref().unwrap_or("-")),
                    Cell::health(endpoint.verdict.health),
                    Cell::text(since(&endpoint.verdict)),
                    Cell::text(reasons(&endpoint.verdict)),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ENDPOINT", "ADDRESS", "VIA", "VERDICT", "SINCE", "REASONS"],
            &rows,
            style,
        ));
    }
    out
}

/// A verdict's reasons on one line.
pub(super) fn reasons(verdict: &Verdict) -> String {
    if verdict.reasons.is_empty() {
        "-".to_string()
    } else {
        verdict.reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_agent::state::{EndpointStatus, Health, LinkStatus};

    fn verdict(health: Health, reasons: &[&str], since_s: u64) -> Verdict {
        Verdict {
            health,
            reasons: reasons.iter().map(ToString::to_string).collect(),
            since_ns: since_s * 1_000_000_000,
        }
    }

    fn link(name: &str, verdict: Verdict, carrier: bool, rx_bytes: u64) -> LinkStatus {
        LinkStatus {
            ifindex: 2,
            name: name.to_string(),
            verdict,
            admin_up: true,
            carrier,
            oper: "up".to_string(),
            mtu: 1500,
            mac: None,
            default_route: true,
            xdp: true,
            rx_packets: 0,
            rx_bytes,
            tx_packets: 0,
            tx_bytes: 2048,
            rx_errors: 0,
            tx_errors: 0,
            rx_dropped: 0,
            tx_dropped: 0,
            retransmits: 4,
        }
    }

    #[test]
    fn the_status_shows_host_links_and_endpoints_in_aligned_columns() {
        let mut state = NetworkState::initial(0);
        state.host = verdict(Health::Up, &["default route via eth0 is up"], 88);
        state.links.insert(
            "eth0".into(),
            link(
                "eth0",
                verdict(Health::Up, &["traffic received"], 88),
                true,
                1536,
            ),
        );
        state.links.insert(
            "wlan0".into(),
            link(
                "wlan0",
                verdict(Health::Down, &["no carrier"], 40),
                false,
                0,
            ),
        );
        state.endpoints.insert(
            "api".into(),
            EndpointStatus {
                name: "api".into(),
                address: "10.0.0.1:443".into(),
                verdict: verdict(Health::Degraded, &["retransmits 3%", "slow"], 97),
                via: Some("eth0".into()),
                retransmits: 3,
            },
        );
        let clock = Clock {
            at_unix_ms: 1_700_000_000_000,
            now_ns: 100_000_000_000,
        };
        let expected = "\
host  up  since 12s ago  default route via eth0 is up

LINK   VERDICT  SINCE      ADMIN/CARRIER  RX       TX       RETRANSMITS  REASONS
eth0   up       12s ago    up/yes         1.5 KiB  2.0 KiB  4            traffic received
wlan0  down     1m00s ago  up/no          0 B      2.0 KiB  4            no carrier

ENDPOINT  ADDRESS       VIA   VERDICT   SINCE   REASONS
api       10.0.0.1:443  eth0  degraded  3s ago  retransmits 3%; slow
";
        assert_eq!(render(&state, &clock, Style::PLAIN), expected);
    }

    #[test]
    fn an_empty_state_says_so() {
        let state = NetworkState::initial(0);
        let clock = Clock {
            at_unix_ms: 0,
            now_ns: 0,
        };
        let text = render(&state, &clock, Style::PLAIN);
        assert!(
            text.starts_with("host  unknown  since 0ms ago  starting"),
            "{text}"
        );
        assert!(text.contains("no links\n") && text.contains("no endpoints configured\n"));
    }
}
