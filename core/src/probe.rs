//! Probe results and their thresholds.
//!
//! A check either passes (with its latency) or fails with a [`Failure`] that says why, so
//! detectors can tell a hang from a refused connection. A [`ProbeTracker`] turns the stream
//! of results into state changes: `failure_threshold` failures in a row report the target
//! down, `success_threshold` passes in a row report it up again, and nothing in between is
//! news. The tracker is pure: the probe actor feeds it results and the time.

use crate::config::{Layer, ProbeSpec, ServiceName};
use serde::Serialize;
use std::mem::discriminant;
use std::time::Duration;

/// Why a check failed; detectors tell failure modes apart by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Failure {
    /// No answer within the timeout (the process may be alive but hung).
    Timeout,
    /// Nothing listening, connection refused or reset.
    Connect(String),
    /// Answered with an unexpected status.
    Status(u16),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Status(s) => write!(f, "answered status {s}"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// The result of one check.
pub type CheckResult = Result<Duration, Failure>;

/// A probe crossing its threshold either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    Up {
        probe: String,
        target: ServiceName,
        layer: Layer,
    },
    Down {
        probe: String,
        target: ServiceName,
        layer: Layer,
        failure: Failure,
        consecutive: u32,
        /// Wall-clock time of the first failed check of the streak (the fault's earliest sign).
        first_failure_unix_ms: u64,
    },
}

impl ProbeEvent {
    pub fn target(&self) -> &ServiceName {
        match self {
            ProbeEvent::Up { target, .. } | ProbeEvent::Down { target, .. } => target,
        }
    }
}

/// The latest state of one probe, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    pub name: String,
    pub layer: Layer,
    pub target: ServiceName,
    /// `None` until the thresholds have decided either way.
    pub up: Option<bool>,
    pub last_ok: Option<bool>,
    pub last_latency_ms: Option<f64>,
    pub last_failure: Option<Failure>,
    pub consecutive_failures: u32,
    /// When the current streak of failures began (its first failed check).
    pub failing_since_unix_ms: Option<u64>,
    pub checks: u64,
    pub failures: u64,
    pub last_check_unix_ms: u64,
}

impl ProbeStatus {
    /// The down event this status stands for, while the probe is down.
    pub fn down_event(&self) -> Option<ProbeEvent> {
        match (self.up, &self.last_failure, self.failing_since_unix_ms) {
            (Some(false), Some(failure), Some(since)) => Some(ProbeEvent::Down {
                probe: self.name.clone(),
                target: self.target.clone(),
                layer: self.layer,
                failure: failure.clone(),
                consecutive: self.consecutive_failures,
                first_failure_unix_ms: since,
            }),
            _ => None,
        }
    }
}

/// Threshold tracking for one probe.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    failure_threshold: u32,
    success_threshold: u32,
    status: ProbeStatus,
    consecutive_ok: u32,
}

impl ProbeTracker {
    pub fn new(spec: &ProbeSpec) -> Self {
        Self {
            failure_threshold: spec.failure_threshold.max(1),
            success_threshold: spec.success_threshold.max(1),
            status: ProbeStatus {
                name: spec.name.clone(),
                layer: spec.layer,
                target: spec.target.clone(),
                up: None,
                last_ok: None,
                last_latency_ms: None,
                last_failure: None,
                consecutive_failures: 0,
                failing_since_unix_ms: None,
                checks: 0,
                failures: 0,
                last_check_unix_ms: 0,
            },
            consecutive_ok: 0,
        }
    }

    pub fn status(&self) -> &ProbeStatus {
        &self.status
    }

    /// Records a check made at `now_unix_ms`; returns the event when the probe changes state.
    pub fn record(&mut self, result: CheckResult, now_unix_ms: u64) -> Option<ProbeEvent> {
        let s = &mut self.status;
        s.checks += 1;
        s.last_check_unix_ms = now_unix_ms;
        match result {
            Ok(latency) => {
                s.last_ok = Some(true);
                s.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
                s.last_failure = None;
                s.consecutive_failures = 0;
                s.failing_since_unix_ms = None;
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                if s.up != Some(true) && self.consecutive_ok >= self.success_threshold {
                    s.up = Some(true);
                    return Some(ProbeEvent::Up { probe: s.name.clone(), target: s.target.clone(), layer: s.layer });
                }
                None
            }
            Err(failure) => {
                // A different kind of failure is a different fault (a crash, then a hang
                // once restarted): it starts its own streak and is reported on its own.
                let changed = s.last_failure.as_ref().is_some_and(|f| discriminant(f) != discriminant(&failure));
                if changed {
                    s.consecutive_failures = 0;
                    s.failing_since_unix_ms = None;
                    if s.up == Some(false) {
                        s.up = None;
                    }
                }
                s.failures += 1;
                s.last_ok = Some(false);
                s.last_failure = Some(failure.clone());
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                self.consecutive_ok = 0;
                let onset = *s.failing_since_unix_ms.get_or_insert(now_unix_ms);
                if s.up != Some(false) && s.consecutive_failures >= self.failure_threshold {
                    s.up = Some(false);
                    return Some(ProbeEvent::Down {
                        probe: s.name.clone(),
                        target: s.target.clone(),
                        layer: s.layer,
                        failure,
                        consecutive: s.consecutive_failures,
                        first_failure_unix_ms: onset,
                    });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProbeCheck;

    fn tracker(failures: u32, successes: u32) -> ProbeTracker {
        ProbeTracker::new(&ProbeSpec {
            name: "p".into(),
            layer: Layer::L7,
            target: ServiceName::parse("api").expect("name"),
            check: ProbeCheck::Tcp { addr: "127.0.0.1:1".parse().expect("addr") },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            failure_threshold: failures,
            success_threshold: successes,
        })
    }

    const OK: CheckResult = Ok(Duration::from_millis(3));

    #[test]
    fn test_down_only_after_failure_threshold_in_a_row() {
        let mut t = tracker(3, 1);
        assert!(matches!(t.record(OK, 1), Some(ProbeEvent::Up { .. })), "first pass decides up");
        assert_eq!(t.record(Err(Failure::Timeout), 10), None);
        assert_eq!(t.record(Err(Failure::Timeout), 20), None);
        assert_eq!(t.record(OK, 30), None, "a pass in between resets the streak");
        assert_eq!(t.record(Err(Failure::Timeout), 40), None);
        assert_eq!(t.record(Err(Failure::Timeout), 50), None);
        let down = t.record(Err(Failure::Timeout), 60).expect("third failure in a row");
        assert!(
            matches!(down, ProbeEvent::Down { consecutive: 3, first_failure_unix_ms: 40, .. }),
            "onset is the streak's first failure: {down:?}"
        );
        assert_eq!(t.record(Err(Failure::Timeout), 70), None, "still down is no news");
    }

    #[test]
    fn test_a_new_kind_of_failure_is_a_new_streak_and_reported_again() {
        // Down because nothing listens; then the restarted process hangs: the hang is news.
        let mut t = tracker(2, 1);
        let refused = || Err(Failure::Connect("refused".into()));
        assert_eq!(t.record(refused(), 10), None);
        assert!(matches!(t.record(refused(), 20), Some(ProbeEvent::Down { failure: Failure::Connect(_), .. })));
        assert_eq!(t.record(Err(Failure::Timeout), 30), None, "first of the new streak");
        let hang = t.record(Err(Failure::Timeout), 40).expect("the hang is reported");
        assert!(
            matches!(
                hang,
                ProbeEvent::Down { failure: Failure::Timeout, first_failure_unix_ms: 30, consecutive: 2, .. }
            ),
            "{hang:?}"
        );
        assert_eq!(t.status().down_event(), Some(hang), "the status stands for the same event");
    }

    #[test]
    fn test_up_again_only_after_success_threshold() {
        let mut t = tracker(1, 2);
        assert!(matches!(t.record(Err(Failure::Connect("refused".into())), 1), Some(ProbeEvent::Down { .. })));
        assert_eq!(t.record(OK, 2), None, "one pass is not enough");
        assert!(matches!(t.record(OK, 3), Some(ProbeEvent::Up { .. })));
        assert_eq!(t.status().checks, 3);
        assert_eq!(t.status().failures, 1);
    }
}
