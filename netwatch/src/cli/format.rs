//! Text for people: ages, byte counts, times of day, verdict colours and aligned tables.

use std::{fmt::Write, time::Duration};

use netwatch_agent::state::Health;

/// Whether to colour verdicts (on a terminal) or not (piped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    #[cfg(test)]
    pub const PLAIN: Self = Self { color: false };

    /// `health` as a word, coloured if the style says so.
    pub fn health(self, health: Health) -> String {
        paint(health.as_str(), Some(health), self)
    }
}

fn paint(text: &str, health: Option<Health>, style: Style) -> String {
    let code = match health {
        Some(_) if !style.color => None,
        Some(Health::Up) => Some("32"),
        Some(Health::Degraded) => Some("33"),
        Some(Health::Down) => Some("31"),
        Some(Health::Unknown) => Some("2"),
        None => None,
    };
    match code {
        Some(code) => format!("\x1b[{code}m{text}\x1b[0m"),
        None => text.to_string(),
    }
}

/// "12s ago", "3m05s ago", "2h07m ago", "4d03h ago".
pub fn ago(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0 => format!("{}ms ago", age.as_millis()),
        1..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m{:02}s ago", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m ago", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h ago", secs / 86400, secs % 86400 / 3600),
    }
}

/// "512 B", "1.5 KiB", "3.2 GiB".
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// "HH:MM:SS.mmm" in local time (UTC if the time zone cannot be read).
pub fn time_of_day(unix_ms: u64) -> String {
    let secs = libc::time_t::try_from(unix_ms / 1000).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain data (integers and a nullable pointer) for which zero is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r keeps no reference to them.
    let local = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    let (hour, minute, second) = if local {
        (tm.tm_hour as u64, tm.tm_min as u64, tm.tm_sec as u64)
    } else {
        let day = unix_ms / 1000 % 86400;
        (day / 3600, day % 3600 / 60, day % 60)
    };
    format!("{hour:02}:{minute:02}:{second:02}.{:03}", unix_ms % 1000)
}

/// A table cell: text, coloured as a verdict when it is one.
pub struct Cell {
    text: String,
    health: Option<Health>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            health: None,
        }
    }

    pub fn health(health: Health) -> Self {
        Self {
            text: health.as_str().to_string(),
            health: Some(health),
        }
    }
}

/// Columns aligned by two spaces, a header row first, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<Cell>], style: Style) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.text.chars().count())
                .chain([headers[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let header: Vec<Cell> = headers.iter().map(|h| Cell::text(*h)).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            line.push_str(&paint(&cell.text, cell.health, style));
            if column + 1 < row.len() {
                let pad = widths[column].saturating_sub(cell.text.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(ago(Duration::from_millis(250)), "250ms ago");
        assert_eq!(ago(Duration::from_secs(12)), "12s ago");
        assert_eq!(ago(Duration::from_secs(185)), "3m05s ago");
        assert_eq!(ago(Duration::from_secs(7620)), "2h07m ago");
        assert_eq!(ago(Duration::from_secs(4 * 86400 + 3 * 3600)), "4d03h ago");
    }

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn time_of_day_has_milliseconds() {
        let text = time_of_day(1_700_000_000_123);
        assert_eq!(text.len(), 12, "{text}");
        assert!(text.ends_with(":20.123"), "{text}");
    }

    #[test]
    fn colour_wraps_only_the_word_and_keeps_columns_aligned() {
        let rows = vec![
            vec![
                Cell::text("eth0"),
                Cell::health(Health::Up),
                Cell::text("x"),
            ],
            vec![
                Cell::text("wlan0"),
                Cell::health(Health::Down),
                Cell::text("y"),
            ],
        ];
        let plain = table(&["LINK", "VERDICT", "R"], &rows, Style::PLAIN);
        assert_eq!(
            plain,
            "LINK   VERDICT  R\neth0   up       x\nwlan0  down     y\n"
        );
        let coloured = table(&["LINK", "VERDICT", "R"], &rows, Style { color: true });
        assert!(
            coloured.contains("\x1b[32mup\x1b[0m       x"),
            "{coloured:?}"
        );
    }
}
