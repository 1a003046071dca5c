//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then one
//! `name{label="value"} number` line per sample
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).

use std::fmt::Write as _;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A number as the format writes it.
pub(super) trait Number {
    fn write(&self, out: &mut String);
}

impl Number for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Number for f64 {
    fn write(&self, out: &mut String) {
        // Rust writes `inf` and `NaN`; the format wants `+Inf`, `-Inf` and `NaN`.
        match *self {
            value if value.is_nan() => out.push_str("NaN"),
            f64::INFINITY => out.push_str("+Inf"),
            f64::NEG_INFINITY => out.push_str("-Inf"),
            value => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

impl Number for bool {
    fn write(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

/// The text of a scrape, written one family at a time.
#[derive(Default)]
pub(super) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family; its samples follow. Names are constants of this crate, so they are
    /// valid metric names and need no escaping; help text and label values are escaped.
    pub(super) fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = write!(self.out, "# HELP {name} ");
        escape(&mut self.out, help, false);
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
        Family {
            out: &mut self.out,
            name,
        }
    }

    pub(super) fn finish(self) -> String {
        self.out
    }
}

pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: impl Number) -> &mut Self {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"");
                escape(self.out, text, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(self.out);
        self.out.push('\n');
        self
    }
}

/// Backslash and newline are escaped in help text; label values also escape `"`.
fn escape(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_in_the_text_format() {
        let mut text = Exposition::default();
        text.family(
            "netwatch_x_total",
            Kind::Counter,
            "Things \\ counted\nlately.",
        )
        .sample(&[], 3u64)
        .sample(&[("interface", "a\"b\\c\nd"), ("verdict", "up")], true);
        text.family("netwatch_y", Kind::Gauge, "Y.")
            .sample(&[], 0.25)
            .sample(&[], f64::INFINITY)
            .sample(&[], f64::NAN);
        assert_eq!(
            text.finish(),
            "# HELP netwatch_x_total Things \\\\ counted\\nlately.\n\
             # TYPE netwatch_x_total counter\n\
             netwatch_x_total 3\n\
             netwatch_x_total{interface=\"a\\\"b\\\\c\\nd\",verdict=\"up\"} 1\n\
             # HELP netwatch_y Y.\n\
             # TYPE netwatch_y gauge\n\
             netwatch_y 0.25\n\
             netwatch_y +Inf\n\
             netwatch_y NaN\n"
        );
    }
}
