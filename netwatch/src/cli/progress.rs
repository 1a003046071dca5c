//! Progress bars for people at a terminal: bytes done of the total, rate, time left and the
//! mirror in use, drawn on stderr while a transfer runs and cleared before its summary.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use netwatch_transfer::{Progress, ProgressFn};

/// A progress bar on stderr, cleared when dropped.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for `operation` on `what` (a key, or the keys a sync covers); none when stderr
    /// is not a terminal or the output is JSON, since then nobody watches it.
    pub fn start(operation: &str, what: &str, json: bool) -> Option<Self> {
        if json || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = Self::drawing_to(operation, what, ProgressDrawTarget::stderr());
        // Redraws between events, so the rate and time left stay current on a slow link.
        bar.bar.enable_steady_tick(Duration::from_millis(250));
        Some(bar)
    }

    fn drawing_to(operation: &str, what: &str, target: ProgressDrawTarget) -> Self {
        // No length until the work is planned: a bar of length 0 would show as full.
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(style());
        bar.set_prefix(format!("{operation} {what}"));
        Self { bar }
    }

    /// What to put in `TransferOptions::progress` to feed this bar.
    pub fn report(&self) -> ProgressFn {
        let bar = self.bar.clone();
        Arc::new(move |event: &Progress| show(&bar, event))
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn show(bar: &ProgressBar, event: &Progress) {
    match event {
        // put and get plan once; sync once per key and destination, each adding to the work.
        Progress::Planned { bytes, .. } => bar.set_length(bar.length().unwrap_or(0) + bytes),
        Progress::Chunk { size, mirror, .. } => {
            bar.set_message(format!("via {mirror}"));
            bar.inc(*size);
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    )
    .expect("a fixed template that parses")
    .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fill_the_bar_and_name_the_mirror() {
        let bar = Bar::drawing_to("get", "builds/app", ProgressDrawTarget::hidden());
        let report = bar.report();
        assert_eq!(bar.bar.length(), None);
        report(&Progress::Planned {
            chunks: 3,
            bytes: 300_000,
        });
        report(&Progress::Chunk {
            size: 100_000,
            moved: 40_000,
            mirror: "eu".to_string(),
        });
        assert_eq!(bar.bar.length(), Some(300_000));
        assert_eq!(bar.bar.position(), 100_000);
        assert_eq!(bar.bar.message(), "via eu");
        // A sync's next key adds to the work.
        report(&Progress::Planned {
            chunks: 1,
            bytes: 50_000,
        });
        report(&Progress::Chunk {
            size: 50_000,
            moved: 50_000,
            mirror: "eu → us".to_string(),
        });
        assert_eq!(bar.bar.length(), Some(350_000));
        assert_eq!(bar.bar.position(), 150_000);
        assert_eq!(bar.bar.message(), "via eu → us");
        assert_eq!(bar.bar.prefix(), "get builds/app");
        // Dropped, it is finished and cleared, so the summary prints on a clean line.
        let watched = bar.bar.clone();
        drop(bar);
        assert!(watched.is_finished());
    }

    #[test]
    fn no_bar_for_json_output() {
        assert!(Bar::start("put", "k", true).is_none());
    }
}
