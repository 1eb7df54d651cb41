//! Playbook runs as they are stored: each step with its permit's audit entry, and how the
//! run ended.

use crate::config::ServiceName;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// The harm guard held a disruptive step: acting on the service would not mend the
    /// cause (a lower layer or a dependency fails now). It may run again later.
    Held,
    /// A dry run of a playbook the target lacks what it needs for (`detail` says what).
    NotApplicable,
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
            RunOutcome::Held => "held",
            RunOutcome::NotApplicable => "not_applicable",
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        self != RunOutcome::Running
    }
}

/// What a step changed, recorded as it ran, so a rollback can put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "undo")]
pub enum Undo {
    /// Start the service again (after a stop or a quarantine).
    StartService,
    /// Stop it again (after a start).
    StopService,
    /// Quarantine it again (after a release).
    QuarantineService,
    /// Lift the quarantine a step imposed (starting it with a fresh budget).
    ReleaseService,
    /// Rename `to` back to `from`.
    Rename { from: PathBuf, to: PathBuf },
    /// Decompress these `.gz` files back to their names without it.
    Decompress { files: Vec<PathBuf> },
    /// Write back vaulted version `version` of `path` (`None`: the file did not exist, so
    /// remove it).
    RestoreVaulted { path: PathBuf, version: Option<String> },
    /// Put back snapshot `snapshot` of directory `path`.
    RestoreSnapshot { path: PathBuf, snapshot: PathBuf },
    /// Set a runtime override back to what it was (and apply the config again), if it
    /// still has the value the step set (`set`): a later change is not overwritten.
    Override {
        setting: crate::overrides::Setting,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<crate::overrides::Setting>,
    },
}

impl Undo {
    /// The action a rollback step is governed and audited as.
    pub fn action(&self) -> &'static str {
        match self {
            Undo::StartService => "start_service",
            Undo::StopService => "stop_service",
            Undo::QuarantineService => "quarantine_service",
            Undo::ReleaseService => "release_service",
            Undo::Rename { .. } => "move_aside",
            Undo::Decompress { .. } => "compress_files",
            Undo::RestoreVaulted { .. } => "restore_file",
            Undo::RestoreSnapshot { .. } => "restore_dir",
            Undo::Override { setting, .. } => setting.action(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Undo::StartService => "start the service again".into(),
            Undo::StopService => "stop the service again".into(),
            Undo::QuarantineService => "quarantine the service again".into(),
            Undo::ReleaseService => "release the service from quarantine".into(),
            Undo::Rename { from, to } => format!("rename {} back to {}", to.display(), from.display()),
            Undo::Decompress { files } => format!("decompress {} file(s)", files.len()),
            Undo::RestoreVaulted { path, version: Some(v) } => {
                format!("write back version {v} of {}", path.display())
            }
            Undo::RestoreVaulted { path, version: None } => format!("remove {} (it did not exist)", path.display()),
            Undo::RestoreSnapshot { path, snapshot } => {
                format!("put back {} from {}", path.display(), snapshot.display())
            }
            Undo::Override { setting, .. } => format!("set {} again", setting.describe()),
        }
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
    /// How to put back what it changed (none for a step that changed nothing or cannot
    /// be undone; the catalog says which).
    #[serde(default)]
    pub undo: Vec<Undo>,
    /// The harm guard (or the supervisor's backoff) left it out: it did nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The service it acted on, when not the run's target (a dependent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<ServiceName>,
}

impl StepRecord {
    /// It ran and did what it does (not skipped, not failed).
    pub fn done(&self) -> bool {
        self.ok && !self.skipped
    }
}

/// Whether the steps that ran took their service down and left it so: a stop that went
/// through, and no start or restart after it that did.
pub fn left_down(steps: &[StepRecord]) -> bool {
    let own = |s: &&StepRecord| s.done() && s.on.is_none();
    let last_stop = steps.iter().rposition(|s| own(&s) && s.action == "stop_service");
    last_stop.is_some_and(|i| {
        !steps[i + 1..].iter().filter(own).any(|s| matches!(s.action.as_str(), "start_service" | "restart_service"))
    })
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
    /// A dry run: nothing changed; each step's detail says what it would have done.
    #[serde(default)]
    pub dry_run: bool,
    /// For a rollback: the run it undoes.
    #[serde(default)]
    pub rollback_of: Option<u64>,
    /// For a run that was rolled back (or is being): the rollback's run.
    #[serde(default)]
    pub rolled_back_by: Option<u64>,
    /// When its verification's stable streak began: the service served again from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_unix_ms: Option<u64>,
    /// Lower-layer checks still failing when it was verified: the run only mitigated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_failing: Vec<String>,
}

impl RunRecord {
    /// A run of `playbook` on `target` that starts now: running, no steps yet.
    pub fn started(
        run_id: u64,
        incident_id: Option<u64>,
        playbook: &str,
        target: &ServiceName,
        now_unix_ms: u64,
    ) -> Self {
        Self {
            run_id,
            incident_id,
            playbook: playbook.to_string(),
            target: target.clone(),
            started_unix_ms: now_unix_ms,
            finished_unix_ms: None,
            outcome: RunOutcome::Running,
            steps: Vec::new(),
            detail: String::new(),
            retry_at_unix_ms: None,
            approval_id: None,
            dry_run: false,
            rollback_of: None,
            rolled_back_by: None,
            restored_unix_ms: None,
            still_failing: Vec::new(),
        }
    }

    pub fn duration_ms(&self) -> Option<u64> {
        self.finished_unix_ms.map(|f| f.saturating_sub(self.started_unix_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: &str, ok: bool) -> StepRecord {
        StepRecord {
            index: 0,
            action: action.into(),
            tier: 2,
            permit_audit_seq: None,
            ok,
            detail: String::new(),
            duration_ms: 0,
            undo: vec![],
            skipped: false,
            on: None,
        }
    }

    #[test]
    fn test_a_run_that_stopped_its_service_and_never_started_it_left_it_down() {
        assert!(left_down(&[step("stop_service", true), step("restore_dir", false)]), "held after the stop");
        assert!(!left_down(&[step("stop_service", true), step("restore_dir", true), step("start_service", true)]));
        assert!(!left_down(&[step("stop_service", false)]), "a stop that failed took nothing down");
        assert!(!left_down(&[step("restart_service", true), step("wait_healthy", false)]));
        assert!(left_down(&[step("start_service", true), step("stop_service", true)]), "the last stop counts");
        let skipped = StepRecord { skipped: true, ..step("start_service", true) };
        assert!(left_down(&[step("stop_service", true), skipped]), "a skipped start started nothing");
        let dependent = StepRecord { on: ServiceName::parse("api").ok(), ..step("restart_service", true) };
        assert!(left_down(&[step("stop_service", true), dependent]), "a dependent's restart is not the target's");
    }
}
