//! Network-aware retry against a real outage: an HTTP download between two namespaces, the
//! link cut mid-transfer for several seconds. With the agent's verdict the download waits
//! out the outage without spending attempts; with plain backoff it runs out of them.

use std::time::Duration;

use netwatch_tests::{
    download::{outage_comparison, DownloadOutcome},
    require_privileges,
};

const SIZE: u64 = 12 << 20;
const CUT_AFTER: Duration = Duration::from_millis(700);
/// Longer than plain backoff's three attempts take (each stalls for a second), so that
/// without the verdict the download must give up.
const OUTAGE: Duration = Duration::from_secs(5);

#[test]
fn a_download_waits_out_an_outage_where_plain_backoff_runs_out_of_attempts() {
    require_privileges();
    let (aware, plain) = outage_comparison(SIZE, CUT_AFTER, OUTAGE);
    println!("{}", table(&aware, &plain));

    assert!(aware.completed, "network-aware download gave up: {aware:?}");
    assert!(aware.verified, "the downloaded bytes differ from the blob");
    assert!(
        aware.report.attempts <= 2,
        "more than one attempt spent on the outage: {:?}",
        aware.report
    );
    assert_eq!(aware.report.outages, 1, "{:?}", aware.report);
    let resume = aware
        .resume_after_up()
        .expect("the retry resumed after the agent reported Up");
    // Printed above against the 100 ms; asserted only loosely (a shared machine).
    assert!(
        resume < Duration::from_secs(1),
        "resumed {resume:?} after Up"
    );

    assert!(
        !plain.completed,
        "plain backoff should run out of attempts: {plain:?}"
    );
    assert!(
        plain
            .error
            .as_deref()
            .is_some_and(|e| e.contains("AttemptsExhausted")),
        "plain backoff ended otherwise: {:?}",
        plain.error
    );
}

fn table(aware: &DownloadOutcome, plain: &DownloadOutcome) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    let row = |name: &str, o: &DownloadOutcome| {
        format!(
            "| {name} | {} | {} | {:.1} s | {} | {} |",
            o.report.attempts,
            if o.completed { "yes" } else { "no" },
            o.report.network_wait.as_secs_f64(),
            ms(o.resume_after_up()),
            ms(o.resume_after_link_up()),
        )
    };
    [
        format!("{} s outage during a {} MiB download:", OUTAGE.as_secs(), SIZE >> 20),
        "| retry | attempts | completed | waited for network | retry after Up | retry after link-up |".into(),
        "|---|---|---|---|---|---|".into(),
        row("network-aware", aware),
        row("plain backoff", plain),
    ]
    .join("\n")
}
