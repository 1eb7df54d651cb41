//! Failure modes, incidents and the MTTR math over them.
//!
//! MTTR runs from detection (the detector opening the incident) to verification (a
//! re-probe seeing the service restored). When a harness knows the fault's onset it is
//! recorded too, so time-to-restore from the user's side can be reported beside MTTR.

use serde::{Deserialize, Serialize};

/// The ten failure modes warden recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    DatabaseUnavailable,
    PortInUse,
    SlowBoot,
    OutOfMemory,
    DiskFull,
    NetworkUnreachable,
    ApiTimeout,
    MissingConfig,
    InvalidCredentials,
    ModelServerDown,
}

impl FailureMode {
    pub const ALL: [FailureMode; 10] = [
        FailureMode::DatabaseUnavailable,
        FailureMode::PortInUse,
        FailureMode::SlowBoot,
        FailureMode::OutOfMemory,
        FailureMode::DiskFull,
        FailureMode::NetworkUnreachable,
        FailureMode::ApiTimeout,
        FailureMode::MissingConfig,
        FailureMode::InvalidCredentials,
        FailureMode::ModelServerDown,
    ];

    /// The number SPEC gives the mode (1–10).
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::DatabaseUnavailable => "database_unavailable",
            FailureMode::PortInUse => "port_in_use",
            FailureMode::SlowBoot => "slow_boot",
            FailureMode::OutOfMemory => "out_of_memory",
            FailureMode::DiskFull => "disk_full",
            FailureMode::NetworkUnreachable => "network_unreachable",
            FailureMode::ApiTimeout => "api_timeout",
            FailureMode::MissingConfig => "missing_config",
            FailureMode::InvalidCredentials => "invalid_credentials",
            FailureMode::ModelServerDown => "model_server_down",
        }
    }
}

/// What a detector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub mode: FailureMode,
    pub service: String,
    pub evidence: String,
    /// The first failed check of the streak.
    pub first_sign_unix_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Resolved,
    /// The playbook ran out of options; a person must look.
    Failed,
}

/// One incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub mode: FailureMode,
    pub service: String,
    /// What the detector saw.
    pub evidence: String,
    pub detected_unix_ms: u64,
    pub fault_onset_unix_ms: Option<u64>,
    pub resolved_unix_ms: Option<u64>,
    pub status: IncidentStatus,
    /// Playbooks tried, in order.
    pub playbooks: Vec<String>,
    pub run_ids: Vec<u64>,
    pub detail: String,
}

impl Incident {
    /// Detection to verified restore; `None` while open or when it failed.
    pub fn mttr_ms(&self) -> Option<u64> {
        match (self.status, self.resolved_unix_ms) {
            (IncidentStatus::Resolved, Some(end)) => Some(end.saturating_sub(self.detected_unix_ms)),
            _ => None,
        }
    }

    /// Whether the first playbook chosen resolved it (the confidence SLO).
    pub fn resolved_by_first_playbook(&self) -> bool {
        self.status == IncidentStatus::Resolved && self.playbooks.len() == 1
    }
}

/// Summary over a set of incidents, newest last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrSummary {
    /// Average MTTR over the last `window` resolved incidents.
    pub rolling_mttr_ms: Option<f64>,
    pub window: usize,
    pub resolved: usize,
    pub failed: usize,
    pub open: usize,
    /// Resolved ÷ (resolved + failed), as a percentage; `None` when nothing has finished.
    pub success_rate_pct: Option<f64>,
}

/// Rolling MTTR and success rate; `incidents` are in opening order.
pub fn summarize(incidents: &[Incident], window: usize) -> MttrSummary {
    let mttrs: Vec<u64> = incidents.iter().filter_map(Incident::mttr_ms).collect();
    let last: Vec<u64> = mttrs.iter().rev().take(window.max(1)).copied().collect();
    let rolling = (!last.is_empty()).then(|| last.iter().sum::<u64>() as f64 / last.len() as f64);
    let count = |s| incidents.iter().filter(|i| i.status == s).count();
    let (resolved, failed, open) =
        (count(IncidentStatus::Resolved), count(IncidentStatus::Failed), count(IncidentStatus::Open));
    let finished = resolved + failed;
    MttrSummary {
        rolling_mttr_ms: rolling,
        window: window.max(1),
        resolved,
        failed,
        open,
        success_rate_pct: (finished > 0).then(|| resolved as f64 * 100.0 / finished as f64),
    }
}

/// Open incidents older than `limit_ms` at `now` (they raise the MTTR alert).
pub fn overdue(incidents: &[Incident], now_unix_ms: u64, limit_ms: u64) -> Vec<u64> {
    incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Open && now_unix_ms.saturating_sub(i.detected_unix_ms) > limit_ms)
        .map(|i| i.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: u64, status: IncidentStatus, detected: u64, resolved: Option<u64>) -> Incident {
        Incident {
            id,
            mode: FailureMode::ApiTimeout,
            service: "api".into(),
            evidence: String::new(),
            detected_unix_ms: detected,
            fault_onset_unix_ms: None,
            resolved_unix_ms: resolved,
            status,
            playbooks: vec!["restart_hung_service".into()],
            run_ids: vec![id],
            detail: String::new(),
        }
    }

    #[test]
    fn test_mode_numbers_match_spec() {
        assert_eq!(FailureMode::DatabaseUnavailable.number(), 1);
        assert_eq!(FailureMode::ApiTimeout.number(), 7);
        assert_eq!(FailureMode::ModelServerDown.number(), 10);
    }

    #[test]
    fn test_mttr_is_detection_to_verified_restore() {
        assert_eq!(incident(1, IncidentStatus::Resolved, 1000, Some(1700)).mttr_ms(), Some(700));
        assert_eq!(incident(1, IncidentStatus::Open, 1000, None).mttr_ms(), None);
        assert_eq!(incident(1, IncidentStatus::Failed, 1000, Some(5000)).mttr_ms(), None);
    }

    #[test]
    fn test_rolling_mttr_averages_last_window_resolved() {
        let mut all: Vec<Incident> =
            (0..12).map(|i| incident(i, IncidentStatus::Resolved, 0, Some(if i < 2 { 10_000 } else { 100 }))).collect();
        all.push(incident(99, IncidentStatus::Failed, 0, None));
        let s = summarize(&all, 10);
        assert_eq!(s.rolling_mttr_ms, Some(100.0), "the two slow old ones fall outside the window");
        assert_eq!((s.resolved, s.failed), (12, 1));
        let rate = s.success_rate_pct.expect("rate");
        assert!((rate - 12.0 * 100.0 / 13.0).abs() < 1e-9);
    }

    #[test]
    fn test_summary_of_nothing_has_no_rates() {
        let s = summarize(&[], 10);
        assert_eq!((s.rolling_mttr_ms, s.success_rate_pct), (None, None));
    }

    #[test]
    fn test_overdue_lists_open_incidents_past_limit() {
        let all = vec![
            incident(1, IncidentStatus::Open, 0, None),
            incident(2, IncidentStatus::Open, 100_000, None),
            incident(3, IncidentStatus::Resolved, 0, Some(1)),
        ];
        assert_eq!(overdue(&all, 130_000, 120_000), vec![1]);
    }
}
