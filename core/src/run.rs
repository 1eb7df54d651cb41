//! Playbook runs as they are stored: each step with its permit's audit entry, and how the
//! run ended.

use crate::config::ServiceName;
use serde::{Deserialize, Serialize};

/// How a playbook run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    /// Governance refused a step; nothing past it ran.
    Denied,
    /// Governance refused a step for now (a rate limit, an hour window); it would allow it
    /// at the run's `retry_at_unix_ms`.
    Throttled,
    /// A step waits for an approver.
    PendingApproval,
    /// Cut short by a crash or a shutdown of warden, not by the playbook: it may run again.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Denied => "denied",
            RunOutcome::Throttled => "throttled",
            RunOutcome::PendingApproval => "pending_approval",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        self != RunOutcome::Running
    }
}

/// One step as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub action: String,
    pub tier: u8,
    /// The audit entry of the decision that permitted it (tier ≥ 2).
    pub permit_audit_seq: Option<u64>,
    pub ok: bool,
    pub detail: String,
    pub duration_ms: u64,
}

/// One playbook run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: u64,
    pub incident_id: Option<u64>,
    pub playbook: String,
    pub target: ServiceName,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub outcome: RunOutcome,
    pub steps: Vec<StepRecord>,
    pub detail: String,
    /// For a throttled run: when governance would allow it.
    #[serde(default)]
    pub retry_at_unix_ms: Option<u64>,
    /// For a run held for an approver: the approval request.
    #[serde(default)]
    pub approval_id: Option<u64>,
}

impl RunRecord {
    pub fn duration_ms(&self) -> Option<u64> {
        self.finished_unix_ms.map(|f| f.saturating_sub(self.started_unix_ms))
    }
}
