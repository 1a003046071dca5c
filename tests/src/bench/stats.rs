//! Order statistics of latency samples and how they are written. Pure: unit-tested without
//! root (`cargo test -p netwatch-tests --bin netwatch-bench`).

/// Rounds below this many give no true p99: the nearest-rank p99 of fewer than 100 samples is
/// their maximum, and the report labels it so.
pub const P99_ROUNDS: usize = 100;

/// The spread of one method's samples, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub min: i64,
    pub p50: i64,
    pub p95: i64,
    pub p99: i64,
    pub max: i64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[i64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            n: sorted.len(),
            min: sorted[0],
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        })
    }

    /// Whether `p99` is a true 99th percentile rather than the maximum of too few rounds.
    pub fn has_p99(&self) -> bool {
        self.n >= P99_ROUNDS
    }

    /// The p99 cell: the figure, or "max X" when there are too few rounds for a p99.
    pub fn p99_cell(&self) -> String {
        if self.has_p99() {
            fmt_ns(self.p99)
        } else {
            format!("max {}", fmt_ns(self.max))
        }
    }
}

/// The nearest-rank percentile of `sorted` (ascending, not empty): the smallest sample with
/// at least `p`% of the samples at or below it. No interpolation, so every figure reported
/// is a latency that was actually measured.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// A latency for people: milliseconds with three significant figures below 1 s, seconds
/// above ("0.412 ms", "41.2 ms", "412 ms", "4.12 s"); negative spans keep their sign.
pub fn fmt_ns(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let ms = ns.unsigned_abs() as f64 / 1e6;
    let body = if ms >= 1000.0 {
        let s = ms / 1000.0;
        if s >= 100.0 {
            format!("{s:.0} s")
        } else if s >= 10.0 {
            format!("{s:.1} s")
        } else {
            format!("{s:.2} s")
        }
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.3} ms")
    };
    format!("{sign}{body}")
}

/// A byte count for people, in binary units ("12.3 MiB").
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A rate in bits per second for people ("9.41 Gbit/s").
pub fn fmt_bits_per_s(bytes_per_s: f64) -> String {
    let bits = bytes_per_s * 8.0;
    if bits >= 1e9 {
        format!("{:.2} Gbit/s", bits / 1e9)
    } else {
        format!("{:.1} Mbit/s", bits / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn nearest_rank_percentiles_are_measured_samples() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 95.0), 95);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
    }

    #[test]
    fn below_a_hundred_rounds_the_p99_is_the_max_and_says_so() {
        let samples: Vec<i64> = (1..=20).map(|i| i * MS).collect();
        let summary = Summary::of(&samples).expect("samples");
        assert_eq!(summary.p99, summary.max);
        assert!(!summary.has_p99());
        assert_eq!(summary.p99_cell(), "max 20.0 ms");

        let samples: Vec<i64> = (1..=200).map(|i| i * MS).collect();
        let summary = Summary::of(&samples).expect("samples");
        assert!(summary.has_p99());
        assert_eq!(summary.p99, 198 * MS);
        assert_eq!(summary.p99_cell(), "198 ms");
    }

    #[test]
    fn summary_sorts_and_handles_one_sample_and_none() {
        let summary = Summary::of(&[5 * MS, MS, 3 * MS]).expect("samples");
        assert_eq!(
            (summary.min, summary.p50, summary.max),
            (MS, 3 * MS, 5 * MS)
        );
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&[42]).expect("one");
        assert_eq!(
            (one.min, one.p50, one.p99, one.max, one.n),
            (42, 42, 42, 42, 1)
        );
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn latencies_read_with_three_significant_figures() {
        assert_eq!(fmt_ns(412_345), "0.412 ms");
        assert_eq!(fmt_ns(4_123_456), "4.12 ms");
        assert_eq!(fmt_ns(41_234_567), "41.2 ms");
        assert_eq!(fmt_ns(412_345_678), "412 ms");
        assert_eq!(fmt_ns(4_123_456_789), "4.12 s");
        assert_eq!(fmt_ns(12_345_678_901), "12.3 s");
        assert_eq!(fmt_ns(-250_000), "-0.250 ms");
        assert_eq!(fmt_ns(0), "0.000 ms");
    }

    #[test]
    fn bytes_and_rates_read_in_their_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(12 * 1024 * 1024 + 300 * 1024), "12.3 MiB");
        assert_eq!(fmt_bits_per_s(1.25e9), "10.00 Gbit/s");
        assert_eq!(fmt_bits_per_s(1.25e6), "10.0 Mbit/s");
    }
}
