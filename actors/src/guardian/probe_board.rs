//! The probes' latest results and recent history, published by each probe actor and read
//! by the API, the metrics, the alerter and the detectors.
//!
//! Shared state outside the actors, like the service table: a probe's restart loses
//! nothing here, readers never ask an actor, and a detector that missed an event (it was
//! restarting, or its report did not get through) finds every probe that is down now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use warden_core::probe::{Outcome, ProbeEvent, ProbeStatus};
use warden_core::probe_history::{CheckRecord, LatencySummary, ProbeHistory};

/// Where probes publish.
#[derive(Debug, Clone, Default)]
pub struct ProbeBoard {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    status: ProbeStatus,
    history: ProbeHistory,
}

/// One probe as the API shows it in a list.
#[derive(Debug, Clone)]
pub struct ProbeSummary {
    pub status: ProbeStatus,
    pub latency: LatencySummary,
    /// The newest check.
    pub last: Option<CheckRecord>,
}

impl Entry {
    fn summary(&self) -> ProbeSummary {
        ProbeSummary {
            status: self.status.clone(),
            latency: self.history.latency(),
            last: self.history.recent().next().cloned(),
        }
    }
}

impl ProbeBoard {
    /// A check's outcome and the status it left.
    pub fn record(&self, status: &ProbeStatus, outcome: &Outcome, at_unix_ms: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = m
            .entry(status.name.clone())
            .or_insert_with(|| Entry { status: status.clone(), history: ProbeHistory::new() });
        entry.status.clone_from(status);
        entry.history.record(outcome, at_unix_ms);
    }

    /// A probe that started: listed (pending) before its first check; an entry it had
    /// before a restart is kept.
    pub fn register(&self, status: &ProbeStatus) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(status.name.clone()).or_insert_with(|| Entry { status: status.clone(), history: ProbeHistory::new() });
    }

    /// Forgets probes no longer configured (after a reload).
    pub fn retain(&self, names: &[&str]) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|name, _| names.contains(&name.as_str()));
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(|e| e.status.clone()).collect()
    }

    /// Every probe with its latency percentiles.
    pub fn summaries(&self) -> Vec<ProbeSummary> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(Entry::summary).collect()
    }

    /// One probe with its recent checks, newest first.
    pub fn detail(&self, name: &str) -> Option<(ProbeSummary, Vec<CheckRecord>)> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.get(name)?;
        Some((e.summary(), e.history.recent().cloned().collect()))
    }

    /// Targets with a probe that is down or whose last check failed: what a dependent's
    /// failure may be explained by (a failing check is news before a threshold is).
    pub fn failing_targets(&self) -> std::collections::BTreeSet<warden_core::config::ServiceName> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values()
            .filter(|e| e.status.consecutive_failures > 0 || e.status.state == warden_core::probe::ProbeState::Down)
            .map(|e| e.status.target.clone())
            .collect()
    }

    /// The down event of every probe that is down now, as its status stands.
    pub fn down_now(&self) -> Vec<ProbeEvent> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().filter_map(|e| e.status.down_event()).collect()
    }
}
