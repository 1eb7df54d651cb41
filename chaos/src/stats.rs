//! Summaries of time samples through an HDR histogram (microsecond resolution, 3 significant
//! digits): count, failures, median, p99, max.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::BenchError;

/// Highest value the histogram tracks: 10 minutes in µs (a run is bounded far below).
const MAX_US: u64 = 600_000_000;

/// One series summarised; times in seconds, `None` when there is no sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub n: u64,
    pub failures: u64,
    pub median_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub max_s: Option<f64>,
}

/// Records every sample (µs) in a histogram and reads the percentiles back.
pub fn summarize(samples: &[Duration], failures: usize) -> Result<Summary, BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_US, 3).map_err(|e| BenchError::Histogram(e.to_string()))?;
    for sample in samples {
        let us = u64::try_from(sample.as_micros()).unwrap_or(MAX_US).clamp(1, MAX_US);
        hist.record(us).map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    // HDR reports a bucket's highest value; its middle is closer to the sample.
    let empty = hist.is_empty();
    let pick = |v: u64| (!empty).then(|| hist.median_equivalent(v) as f64 / 1e6);
    Ok(Summary {
        n: hist.len(),
        failures: failures as u64,
        median_s: pick(hist.value_at_quantile(0.5)),
        p99_s: pick(hist.value_at_quantile(0.99)),
        max_s: pick(hist.max()),
    })
}

/// `0.123` (seconds, three decimals) or `—`.
pub fn fmt_secs(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"))
}

/// `peer / base` as `6.2×`, or `—` when either is missing or the base is zero.
pub fn fmt_ratio(peer: Option<f64>, base: Option<f64>) -> String {
    match (peer, base) {
        (Some(p), Some(b)) if b > 0.0 => format!("{:.1}×", p / b),
        _ => "—".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn test_summarize_percentiles_within_hdr_precision() {
        // Invariant: median/p99/max match the exact order statistics to 3 significant digits.
        let samples: Vec<Duration> = (1..=100).map(|i| ms(i * 10)).collect();
        let s = summarize(&samples, 2).expect("summary");
        assert_eq!((s.n, s.failures), (100, 2));
        let close = |got: Option<f64>, want: f64| {
            let got = got.expect("value");
            assert!((got - want).abs() <= want * 0.001, "got {got}, want {want}");
        };
        close(s.median_s, 0.5);
        close(s.p99_s, 0.99);
        close(s.max_s, 1.0);
    }

    #[test]
    fn test_summarize_empty_has_no_percentiles() {
        let s = summarize(&[], 3).expect("summary");
        assert_eq!((s.n, s.failures, s.median_s, s.max_s), (0, 3, None, None));
    }

    #[test]
    fn test_summarize_clamps_zero_and_huge() {
        let s = summarize(&[Duration::ZERO, Duration::from_secs(100_000)], 0).expect("summary");
        assert_eq!(s.n, 2);
        assert!(s.max_s.expect("max") <= 600.6);
    }

    #[test]
    fn test_fmt_secs_and_ratio() {
        assert_eq!(fmt_secs(Some(0.12345)), "0.123");
        assert_eq!(fmt_secs(None), "—");
        assert_eq!(fmt_ratio(Some(1.0), Some(0.25)), "4.0×");
        assert_eq!(fmt_ratio(Some(1.0), Some(0.0)), "—");
        assert_eq!(fmt_ratio(None, Some(1.0)), "—");
    }
}
