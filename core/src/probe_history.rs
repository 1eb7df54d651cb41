//! What a probe has seen lately: its last checks, newest first, and the latency of its
//! passing checks in an HDR histogram (p50/p99 without keeping every sample).
//!
//! Kept apart from the [`crate::probe::ProbeTracker`]: the tracker decides state, the
//! history only remembers, so the API can show why a probe is where it is.

use crate::probe::{Failure, Outcome};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;

/// Checks kept per probe.
pub const RECENT: usize = 100;
/// The histogram's range: 1 µs to 10 minutes, two significant digits (about 10 KiB).
const MAX_MICROS: u64 = 600_000_000;

/// One check as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    pub at_unix_ms: u64,
    /// `ok`, `fail` or `unsupported`.
    pub result: &'static str,
    pub latency_ms: Option<f64>,
    pub failure: Option<Failure>,
    pub warning: Option<String>,
    pub unsupported: Option<String>,
}

impl CheckRecord {
    pub fn new(outcome: &Outcome, at_unix_ms: u64) -> Self {
        let mut r =
            Self { at_unix_ms, result: "ok", latency_ms: None, failure: None, warning: None, unsupported: None };
        match outcome {
            Outcome::Pass { latency, warning } => {
                r.latency_ms = Some(latency.as_secs_f64() * 1000.0);
                r.warning = warning.clone();
            }
            Outcome::Fail(f) => {
                r.result = "fail";
                r.failure = Some(f.clone());
            }
            Outcome::Unsupported(why) => {
                r.result = "unsupported";
                r.unsupported = Some(why.clone());
            }
        }
        r
    }
}

/// Latency percentiles of the passing checks, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Passing checks measured.
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// A probe's recent checks and latency distribution.
#[derive(Debug, Clone)]
pub struct ProbeHistory {
    recent: VecDeque<CheckRecord>,
    latency: Option<Histogram<u32>>,
}

impl Default for ProbeHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeHistory {
    pub fn new() -> Self {
        Self { recent: VecDeque::with_capacity(RECENT), latency: Histogram::new_with_bounds(1, MAX_MICROS, 2).ok() }
    }

    pub fn record(&mut self, outcome: &Outcome, at_unix_ms: u64) {
        if let (Outcome::Pass { latency, .. }, Some(h)) = (outcome, self.latency.as_mut()) {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            h.saturating_record(micros.clamp(1, MAX_MICROS));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(CheckRecord::new(outcome, at_unix_ms));
    }

    /// The last checks, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &CheckRecord> {
        self.recent.iter()
    }

    pub fn latency(&self) -> LatencySummary {
        let Some(h) = self.latency.as_ref().filter(|h| !h.is_empty()) else {
            return LatencySummary { count: 0, p50_ms: None, p99_ms: None, max_ms: None };
        };
        let ms = |micros: u64| Some(micros as f64 / 1000.0);
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pass(ms: u64) -> Outcome {
        Outcome::Pass { latency: Duration::from_millis(ms), warning: None }
    }

    #[test]
    fn test_recent_checks_are_newest_first_and_bounded() {
        let mut h = ProbeHistory::new();
        for i in 0..(RECENT as u64 + 5) {
            h.record(&pass(1), i);
        }
        h.record(&Outcome::Fail(Failure::Timeout), 1_000);
        let recent: Vec<_> = h.recent().collect();
        assert_eq!(recent.len(), RECENT, "only the last {RECENT} are kept");
        assert_eq!((recent[0].result, recent[0].at_unix_ms), ("fail", 1_000));
        assert_eq!(recent[0].failure, Some(Failure::Timeout));
        assert_eq!(recent[1].at_unix_ms, RECENT as u64 + 4);
    }

    #[test]
    fn test_latency_percentiles_come_from_passing_checks_only() {
        let mut h = ProbeHistory::new();
        assert_eq!(h.latency().count, 0);
        assert_eq!(h.latency().p50_ms, None, "no figure before the first pass");
        for _ in 0..98 {
            h.record(&pass(2), 0);
        }
        h.record(&pass(100), 0);
        h.record(&pass(100), 0);
        h.record(&Outcome::Fail(Failure::Timeout), 0);
        h.record(&Outcome::Unsupported("no".into()), 0);
        let l = h.latency();
        assert_eq!(l.count, 100, "failures have no latency");
        let p50 = l.p50_ms.expect("p50");
        let p99 = l.p99_ms.expect("p99");
        assert!((1.9..2.1).contains(&p50), "p50 {p50}");
        assert!((99.0..101.0).contains(&p99), "p99 {p99}");
    }
}
