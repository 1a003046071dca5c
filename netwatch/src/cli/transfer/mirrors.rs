//! `netwatch mirrors`: every mirror measured now, in the order a get would try them, with its
//! latency, bandwidth, score, health (the agent's verdict on its endpoint) and hit rate.

use std::process::ExitCode;

use serde::Serialize;

use super::{load, open, run, scoreboard, to_json, TransferArgs, TransferCommandError};
use crate::{
    cli::{
        format::{table, Cell, Style},
        remote::{emit, stdout_is_terminal},
        CacheArg,
    },
    config::MirrorConfig,
    retry::{AgentSource, StateSource},
    settings::Settings,
    state::Health,
    transfer::{self, Access, MirrorStore},
};

/// The agent's socket gives each mirror's health.
#[derive(Debug, clap::Args)]
pub struct MirrorsArgs {
    #[command(flatten)]
    pub cache: CacheArg,
    #[command(flatten)]
    pub common: TransferArgs,
}

pub fn run_mirrors(args: &MirrorsArgs, settings: &Settings) -> ExitCode {
    run(mirrors(args, settings))
}

/// One row of `netwatch mirrors`.
#[derive(Debug, Serialize)]
struct MirrorRow {
    name: String,
    region: Option<String>,
    priority: u32,
    url: String,
    /// Whether it answered the HEAD.
    answered: bool,
    latency_ms: Option<f64>,
    /// The scoreboard's average of measurements and observed transfers.
    bandwidth_bytes_per_sec: Option<f64>,
    score: Option<f64>,
    /// The endpoint whose verdict is its health.
    endpoint: Option<String>,
    /// That verdict; `None` without an endpoint, an agent, or the endpoint in the agent.
    health: Option<Health>,
    /// Objects it served over those asked of it, over recent transfers.
    hit_rate: Option<f64>,
    /// Why it did not answer, or why its bandwidth could not be measured.
    error: Option<String>,
}

async fn mirrors(
    args: &MirrorsArgs,
    settings: &Settings,
) -> Result<ExitCode, TransferCommandError> {
    let (config, _) = load(settings)?;
    let mut opened = Vec::new();
    let mut unopened = Vec::new();
    for mirror in config.mirrors_by_priority() {
        match open(mirror, Access::Read) {
            Ok(store) => opened.push((mirror, store)),
            Err(error) => unopened.push(row(mirror, Some(error.to_string()))),
        }
    }
    let stores: Vec<MirrorStore> = opened.iter().map(|(_, s)| s.clone()).collect();
    let mut board = scoreboard(settings);
    let source = AgentSource::new(settings.socket.clone());
    let (probes, state) = tokio::join!(transfer::measure_mirrors(&stores), async {
        source.watch().await.map(|watch| watch.current())
    });
    for probe in &probes {
        board.record_measurement(probe);
    }
    board.save_or_warn();
    let agent = match state {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::debug!(%error, "no agent: mirror health not shown");
            None
        }
    };

    let mut rows = Vec::new();
    for ranked in board.ranked(&stores, agent.as_deref()) {
        let (mirror, store) = &opened[ranked.index];
        let probe = &probes[ranked.index];
        let entry = board.entry(store);
        let mut r = row(mirror, probe.error.clone());
        r.answered = probe.error.is_none();
        r.latency_ms = probe.latency_ms;
        r.bandwidth_bytes_per_sec = entry.and_then(|e| e.bandwidth_bytes_per_sec);
        r.score = ranked.score;
        r.health = ranked.health;
        r.hit_rate = entry.and_then(|e| e.hit_rate());
        if r.error.is_none() {
            r.error = probe.bandwidth_error.clone();
        }
        rows.push(r);
    }
    rows.extend(unopened);

    if args.common.json {
        emit(&to_json(&rows))?;
    } else {
        let style = Style {
            color: stdout_is_terminal(),
        };
        let cells: Vec<Vec<Cell>> = rows.iter().map(|r| cells(r, agent.is_some())).collect();
        let text = table(
            &[
                "MIRROR",
                "REGION",
                "PRIORITY",
                "URL",
                "LATENCY",
                "BANDWIDTH",
                "SCORE",
                "HEALTH",
                "HIT-RATE",
                "ERROR",
            ],
            &cells,
            style,
        );
        emit(text.trim_end())?;
    }
    Ok(if rows.iter().all(|r| r.answered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn row(mirror: &MirrorConfig, error: Option<String>) -> MirrorRow {
    MirrorRow {
        name: mirror.name.clone(),
        region: mirror.region.clone(),
        priority: mirror.priority,
        url: mirror.url.to_string(),
        answered: false,
        latency_ms: None,
        bandwidth_bytes_per_sec: None,
        score: None,
        endpoint: mirror.endpoint.clone(),
        health: None,
        hit_rate: None,
        error,
    }
}

fn cells(r: &MirrorRow, agent: bool) -> Vec<Cell> {
    let health = match (&r.endpoint, r.health) {
        (None, _) => Cell::text("-"),
        (Some(_), Some(health)) => Cell::health(health),
        (Some(_), None) if agent => Cell::text("not watched"),
        (Some(_), None) => Cell::text("no agent"),
    };
    vec![
        Cell::text(&r.name),
        Cell::text(r.region.as_deref().unwrap_or("-")),
        Cell::text(r.priority.to_string()),
        Cell::text(&r.url),
        Cell::text(match r.latency_ms {
            Some(ms) => format!("{ms:.1} ms"),
            None => "no answer".to_string(),
        }),
        Cell::text(r.bandwidth_bytes_per_sec.map_or("-".to_string(), rate)),
        Cell::text(r.score.map_or("-".to_string(), |s| format!("{s:.2}"))),
        health,
        Cell::text(
            r.hit_rate
                .map_or("-".to_string(), |h| format!("{:.0}%", h * 100.0)),
        ),
        Cell::text(r.error.as_deref().unwrap_or("-")),
    ]
}

/// "812 KiB/s", "93.4 MiB/s", "2.1 GiB/s".
fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", crate::cli::format::bytes(bytes_per_sec as u64))
}
