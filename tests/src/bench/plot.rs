//! SVG plots drawn by hand: one lane per method, every sample a dot, a box from p25 to p75
//! with the median marked, whiskers to min and max, on a log-scale axis in milliseconds.

use std::fmt::Write as _;

use super::report::Table;
use super::stats::percentile;

/// Width of the plotting area; the labels' column grows with the longest label.
const PLOT_W: f64 = 640.0;
/// Rough advance of one character of the 12 px sans-serif labels.
const CHAR_W: f64 = 6.4;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const LANE: f64 = 42.0;
const BOTTOM: f64 = 50.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The decades (powers of ten, in ms) that span `lo_ms..=hi_ms`.
pub fn decades(lo_ms: f64, hi_ms: f64) -> (i32, i32) {
    let lo = lo_ms.max(1e-3).log10().floor() as i32;
    let hi = hi_ms.max(1e-3).log10().ceil() as i32;
    (lo, hi.max(lo + 1))
}

/// The plot of `table`, or `None` if it has no positive sample to draw.
pub fn svg(title: &str, table: &Table) -> Option<String> {
    let rows: Vec<_> = table
        .rows
        .iter()
        .filter(|r| r.plot)
        .map(|r| {
            let mut ms: Vec<f64> = r
                .samples
                .iter()
                .filter(|s| **s > 0)
                .map(|s| *s as f64 / 1e6)
                .collect();
            ms.sort_by(f64::total_cmp);
            (r.method.as_str(), ms)
        })
        .collect();
    let all: Vec<f64> = rows.iter().flat_map(|(_, ms)| ms.iter().copied()).collect();
    if all.is_empty() {
        return None;
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (d_lo, d_hi) = decades(lo, hi);
    let labels: Vec<String> = rows
        .iter()
        .map(|(method, ms)| format!("{} (n={})", method, ms.len()))
        .collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let left = (longest as f64 * CHAR_W + 20.0).max(160.0);
    let width = left + PLOT_W + RIGHT;
    let plot_w = PLOT_W;
    let x =
        |ms: f64| left + (ms.max(1e-3).log10() - f64::from(d_lo)) / f64::from(d_hi - d_lo) * plot_w;
    let height = TOP + LANE * rows.len() as f64 + BOTTOM;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height}" viewBox="0 0 {width:.0} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        10,
        escape(title)
    );
    let axis_y = TOP + LANE * rows.len() as f64;
    for decade in d_lo..=d_hi {
        let value = 10f64.powi(decade);
        let gx = x(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{axis_y}" stroke="#ccc"/>"##
        );
        let label = if value >= 1.0 {
            format!("{value:.0}")
        } else {
            format!("{value}")
        };
        let _ = writeln!(
            svg,
            r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            axis_y + 16.0
        );
        if decade < d_hi {
            for step in 2..10 {
                let mx = x(value * f64::from(step));
                let _ = writeln!(
                    svg,
                    r##"<line x1="{mx:.1}" y1="{axis_y}" x2="{mx:.1}" y2="{:.1}" stroke="#999"/>"##,
                    axis_y + 4.0
                );
            }
        }
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left:.1}" y1="{axis_y}" x2="{:.1}" y2="{axis_y}" stroke="#333"/>"##,
        width - RIGHT
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency, ms (log scale); box p25-p75, bar p50, whiskers min-max</text>"#,
        left + plot_w / 2.0,
        axis_y + 36.0
    );
    for (i, (_, ms)) in rows.iter().enumerate() {
        let mid = TOP + LANE * (i as f64 + 0.5);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            mid + 4.0,
            escape(&labels[i]),
        );
        if ms.is_empty() {
            continue;
        }
        let as_ns: Vec<i64> = ms.iter().map(|m| (m * 1e6) as i64).collect();
        let q = |p: f64| percentile(&as_ns, p) as f64 / 1e6;
        let (x_min, x_max) = (x(ms[0]), x(ms[ms.len() - 1]));
        let (x25, x50, x75) = (x(q(25.0)), x(q(50.0)), x(q(75.0)));
        let _ = writeln!(
            svg,
            r##"<line x1="{x_min:.1}" y1="{mid:.1}" x2="{x_max:.1}" y2="{mid:.1}" stroke="#555"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{x25:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#9ecae1" fill-opacity="0.6" stroke="#3182bd"/>"##,
            mid - 10.0,
            (x75 - x25).max(1.0),
            20.0
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{x50:.1}" y1="{:.1}" x2="{x50:.1}" y2="{:.1}" stroke="#08306b" stroke-width="2.5"/>"##,
            mid - 12.0,
            mid + 12.0
        );
        for (k, m) in ms.iter().enumerate() {
            // A fixed vertical spread so equal values stay visible without randomness.
            let dy = ((k * 7) % 11) as f64 - 5.0;
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#e6550d" fill-opacity="0.55"/>"##,
                x(*m),
                mid + dy
            );
        }
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_span_the_samples() {
        assert_eq!(decades(0.3, 45.0), (-1, 2));
        assert_eq!(decades(1.0, 1.0), (0, 1));
        assert_eq!(decades(1500.0, 13000.0), (3, 5));
    }

    #[test]
    fn a_table_becomes_one_svg_with_a_lane_per_method() {
        let mut table = Table::new("fault", "Time to <Down>", &["netwatch", "sysfs 1 s"]);
        table.record("netwatch", Some(2_000_000));
        table.record("sysfs 1 s", Some(400_000_000));
        let svg = svg("t & t", &table).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("netwatch (n=1)") && svg.contains("t &amp; t"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let empty = Table::new("x", "x", &["a"]);
        assert!(super::svg("x", &empty).is_none());
    }
}
