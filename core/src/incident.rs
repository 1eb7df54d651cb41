//! Incidents: their lifecycle and the MTTR math over them.
//!
//! An incident opens on a [`Finding`], runs its mode's playbooks in catalog order (each
//! retried up to its `max_retries` when it fails, rerun when warden itself cut it short),
//! and ends resolved (verified restored) or failed (every playbook tried: a person must
//! look). [`Incident::finish_run`] is that rule as a plain function; the incident manager
//! only stores, dispatches and alerts.
//!
//! MTTR runs from detection (the detector opening the incident) to verification (a
//! re-probe seeing the service restored). When the fault's onset is known (the first
//! failed check of the streak, or a harness's injection time) it is kept beside it.

use crate::approval::{Approval, ApprovalStatus};
use crate::config::ServiceName;
use crate::diagnose::{Cause, plan};
use crate::mode::FailureMode;
use crate::playbook::{Catalog, Playbook};
use crate::run::{RunOutcome, RunRecord};
use serde::{Deserialize, Serialize};

/// What a new finding is to the open incidents where a path between a service and one
/// that depends on it directly may be cut (both ends network unreachable, first seen
/// together: [`crate::detect::one_cut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SameCut {
    /// The finding is the far end of this dependent's incident: linked to it, not opened.
    LinkTo(u64),
    /// The finding's own incident takes these dependencies' incidents in (their end was
    /// seen first; the dependent's repair, a failover, goes round the cut).
    TakeIn(Vec<u64>),
}

/// How `f` relates to the `open` incidents as one cut, if it does; `depends_directly(a, b)`:
/// `a` names `b` in its `depends_on`.
pub fn same_cut<'a>(
    f: &Finding,
    open: impl Iterator<Item = &'a Incident> + Clone,
    depends_directly: impl Fn(&ServiceName, &ServiceName) -> bool,
) -> Option<SameCut> {
    let onset = |i: &Incident| i.fault_onset_unix_ms.unwrap_or(i.detected_unix_ms);
    let cut = |i: &Incident| crate::detect::one_cut(i.mode, onset(i), f.mode, f.first_sign_unix_ms);
    if let Some(i) = open.clone().find(|i| depends_directly(&i.service, &f.service) && cut(i)) {
        return Some(SameCut::LinkTo(i.id));
    }
    let taken: Vec<u64> = open
        .filter(|i| depends_directly(&f.service, &i.service) && i.status != IncidentStatus::Mitigated && cut(i))
        .map(|i| i.id)
        .collect();
    (!taken.is_empty()).then_some(SameCut::TakeIn(taken))
}

/// How many times one playbook may be cut short by warden's own crash or shutdown before
/// the incident moves on: an interrupted run says nothing about the playbook, but a run
/// that keeps taking warden down with it must not loop.
pub const MAX_INTERRUPTIONS: usize = 3;

/// What a detector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub mode: FailureMode,
    pub service: ServiceName,
    pub evidence: String,
    /// The first failed check of the streak.
    pub first_sign_unix_ms: u64,
    /// Why, as far as the signal says.
    pub cause: Cause,
    /// The same fault (the same probe streak, the same condition) is still there after
    /// its incident was resolved: the repair did not hold.
    pub persists: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    /// Open, its repair waiting for an approver (the run's tier 3 step).
    AwaitingApproval,
    /// The service serves again, but a lower layer still fails for a cause outside it (a
    /// cut link after a failover): no disruptive step runs against the service; resolved
    /// once that layer recovers.
    Mitigated,
    Resolved,
    /// Every playbook failed or none applies; a person must look.
    Failed,
    /// The fault went away by itself before a repair ended (no run of warden's fixed it).
    Cleared,
    /// A lower layer's or a dependency's incident explains it (`absorbed_by`); its plan
    /// stopped and that incident's repair is the one that counts.
    Absorbed,
    /// An operator closed it (with a reason).
    Closed,
}

/// One playbook run made for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub run_id: u64,
    pub playbook: String,
    /// `None` while the run goes on.
    pub outcome: Option<RunOutcome>,
    /// For a throttled run: when governance would allow the playbook again.
    #[serde(default)]
    pub retry_at_unix_ms: Option<u64>,
    /// For a run held for an approval: the approval request.
    #[serde(default)]
    pub approval_id: Option<u64>,
}

/// One incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub mode: FailureMode,
    pub service: ServiceName,
    /// What the detector saw.
    pub evidence: String,
    pub detected_unix_ms: u64,
    pub fault_onset_unix_ms: Option<u64>,
    pub resolved_unix_ms: Option<u64>,
    pub status: IncidentStatus,
    /// Playbook runs, in order.
    pub attempts: Vec<Attempt>,
    pub detail: String,
    /// How many times detectors reported it (the first and every later sighting).
    #[serde(default = "one")]
    pub findings: u32,
    #[serde(default)]
    pub last_finding_unix_ms: Option<u64>,
    /// Failures this incident's fault explains (a dependent's, a higher layer's), which
    /// were suppressed rather than opened as incidents of their own.
    #[serde(default)]
    pub suppressed: Vec<String>,
    /// The diagnosis made before the first repair.
    #[serde(default)]
    pub cause: Cause,
    /// The playbooks in the order the diagnosis chose (empty: the mode's catalog order).
    #[serde(default)]
    pub plan: Vec<String>,
    /// The incident's trace (W3C `traceparent` of its root span) when traces are exported:
    /// what a trace backend finds it by, and what its later spans join after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The mode's playbooks left out of the plan: the service lacks what they need.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applicable: Vec<String>,
    /// When the service was verified restored: the first pass of the checks' stable streak
    /// (MTTR counts to it). For a mitigated incident, when the mitigation took hold.
    #[serde(default)]
    pub restored_unix_ms: Option<u64>,
    /// What still fails while it is mitigated (lower-layer checks), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_failing: Vec<String>,
    /// Dependencies whose own path was seen cut by the same fault (their probes fail too):
    /// a repair that went round the cut mitigates, and the incident ends when they are
    /// whole again as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits_on: Vec<ServiceName>,
    /// The incident that explains this one (status absorbed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absorbed_by: Option<u64>,
    /// A person said they are on it: automatic repair of it waits for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<OperatorNote>,
    /// The person who closed it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<OperatorNote>,
    /// The playbook that waits for a hold on automatic repair to lift (a pause,
    /// maintenance, an operator at work, the breaker, an acknowledgement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_hold: Option<String>,
}

/// A person's word on an incident: who, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorNote {
    pub by: String,
    pub at_unix_ms: u64,
    pub reason: String,
}

/// How long a run held by the harm guard (a lower layer or a dependency failing) waits
/// before its playbook is tried again at first; it doubles with every hold, up to
/// [`HOLD_RETRY_MAX_MS`].
pub const HOLD_RETRY_MS: u64 = 1_000;
pub const HOLD_RETRY_MAX_MS: u64 = 30_000;
/// Held this many times (about ten minutes), a playbook gives way to the next: what holds
/// it (a lower layer, a dependency) is not getting better by itself.
pub const MAX_HOLDS: usize = 24;

fn one() -> u32 {
    1
}

/// What to do next with an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Start a run of this playbook (then record it with [`Incident::begin`]).
    Run { playbook: String },
    /// Verified restored: the incident is now resolved.
    Resolved { mttr_ms: u64 },
    /// Nothing left to try: the incident is now failed and a person must look.
    Escalate { reason: String },
    /// Governance holds the playbook until `retry_at_unix_ms` (a rate limit, an hour
    /// window); the incident stays open and [`Incident::due`] says when to run it again.
    Wait { playbook: String, retry_at_unix_ms: u64, reason: String },
    /// A step needs an approver: the incident waits (awaiting approval) until
    /// [`Incident::approval_settled`] says what the decision means.
    AwaitApproval { playbook: String, approval_id: u64, reason: String },
    /// The service serves again, a lower layer still fails: the incident is now mitigated
    /// and waits for that layer (no further step runs).
    Mitigated { still_failing: Vec<String> },
}

impl IncidentStatus {
    /// It ended without warden healing it: failed, or closed by a person (who took it
    /// over); the success rate and the objectives count it as a failure.
    pub fn unhealed(self) -> bool {
        matches!(self, IncidentStatus::Failed | IncidentStatus::Closed)
    }

    /// Not yet resolved or failed.
    pub fn is_open(self) -> bool {
        matches!(self, IncidentStatus::Open | IncidentStatus::AwaitingApproval | IncidentStatus::Mitigated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::AwaitingApproval => "awaiting_approval",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Failed => "failed",
            IncidentStatus::Cleared => "cleared",
            IncidentStatus::Mitigated => "mitigated",
            IncidentStatus::Absorbed => "absorbed",
            IncidentStatus::Closed => "closed",
        }
    }
}

impl Incident {
    /// A new open incident for `finding`, detected at `now_unix_ms`.
    pub fn open(id: u64, finding: &Finding, now_unix_ms: u64) -> Self {
        Self {
            id,
            mode: finding.mode,
            service: finding.service.clone(),
            evidence: finding.evidence.clone(),
            detected_unix_ms: now_unix_ms,
            fault_onset_unix_ms: Some(finding.first_sign_unix_ms),
            resolved_unix_ms: None,
            status: IncidentStatus::Open,
            attempts: Vec::new(),
            detail: String::new(),
            findings: 1,
            last_finding_unix_ms: Some(now_unix_ms),
            suppressed: Vec::new(),
            cause: finding.cause,
            plan: Vec::new(),
            trace: None,
            not_applicable: Vec::new(),
            restored_unix_ms: None,
            still_failing: Vec::new(),
            waits_on: Vec::new(),
            absorbed_by: None,
            acknowledged: None,
            closed: None,
            on_hold: None,
        }
    }

    /// The detector no longer sees the fault. An incident with no run under way (waiting
    /// for governance or an approver, or with repair turned off) closes as cleared; one
    /// whose repair runs lets the run's verification decide. Whether it closed.
    pub fn fault_cleared(&mut self, now_unix_ms: u64) -> bool {
        if !self.status.is_open() || self.current_run().is_some() {
            return false;
        }
        // A mitigation ends when every probe of the service passes again (the incident
        // manager's tick), not when one finding stops being seen.
        if self.status == IncidentStatus::Mitigated {
            return false;
        }
        self.status = IncidentStatus::Cleared;
        self.resolved_unix_ms = Some(now_unix_ms.max(self.detected_unix_ms));
        self.detail = "the fault cleared by itself before a repair ended".into();
        true
    }

    /// A mitigated incident's lower layer recovered: it is resolved (its MTTR counts to the
    /// mitigation, when the service served again). Whether it did.
    pub fn lower_recovered(&mut self, now_unix_ms: u64) -> bool {
        if self.status != IncidentStatus::Mitigated {
            return false;
        }
        self.status = IncidentStatus::Resolved;
        self.resolved_unix_ms = Some(now_unix_ms.max(self.detected_unix_ms));
        self.detail = format!("mitigated, then the lower layer recovered ({})", self.still_failing.join("; "));
        self.still_failing.clear();
        true
    }

    /// Another incident (`by`, of a lower layer or a dependency) explains this one: its
    /// plan stops here. Whether it was open to be absorbed.
    pub fn absorb(&mut self, by: u64, why: &str, now_unix_ms: u64) -> bool {
        if !self.status.is_open() || self.status == IncidentStatus::Mitigated {
            return false;
        }
        self.status = IncidentStatus::Absorbed;
        self.absorbed_by = Some(by);
        self.resolved_unix_ms = Some(now_unix_ms.max(self.detected_unix_ms));
        self.detail = format!("explained by incident {by}: {why}");
        true
    }

    /// An operator acknowledged it: they are on it.
    pub fn acknowledge(&mut self, note: OperatorNote) -> Result<(), String> {
        if !self.status.is_open() {
            return Err(format!(
                "incident {} is {}: only an open incident can be acknowledged",
                self.id,
                self.status.as_str()
            ));
        }
        self.acknowledged = Some(note);
        Ok(())
    }

    /// An operator closed it. Any incident not yet closed may be (a failed one too).
    pub fn close(&mut self, note: OperatorNote) -> Result<(), String> {
        if matches!(self.status, IncidentStatus::Closed) {
            return Err(format!("incident {} is closed already", self.id));
        }
        if matches!(self.status, IncidentStatus::Resolved | IncidentStatus::Cleared | IncidentStatus::Absorbed) {
            return Err(format!("incident {} is {}: nothing to close", self.id, self.status.as_str()));
        }
        if self.current_run().is_some() {
            return Err(format!(
                "incident {} has a repair running; wait for it to end or pause healing first",
                self.id
            ));
        }
        if self.status.is_open() {
            self.resolved_unix_ms = Some(note.at_unix_ms.max(self.detected_unix_ms));
        }
        self.detail = format!("closed by {}: {}", note.by, note.reason);
        self.status = IncidentStatus::Closed;
        self.closed = Some(note);
        Ok(())
    }

    /// A resolved incident's fault came back soon after: the playbook that resolved it
    /// did not hold, so the incident opens again with the next untried playbook (or
    /// escalates when none is left) instead of a new incident starting from the first.
    pub fn reopen(&mut self, evidence: &str, catalog: &Catalog) -> NextStep {
        let last = self.attempts.last().map(|a| a.playbook.clone()).unwrap_or_default();
        self.status = IncidentStatus::Open;
        self.resolved_unix_ms = None;
        self.findings = self.findings.saturating_add(1);
        self.move_on(&last, &format!("did not hold: the fault came back ({evidence})"), catalog)
    }

    /// Records a failure this incident explains (once per text).
    pub fn link(&mut self, suppressed: String) -> bool {
        if self.suppressed.contains(&suppressed) || self.suppressed.len() >= 50 {
            return false;
        }
        self.suppressed.push(suppressed);
        true
    }

    /// The path this incident's service lost to `dependency` is seen cut from the other end
    /// too (the dependency's own probes fail the same way): one fault, so no incident of
    /// its own. Linked here, and the incident waits on `dependency`: a repair that goes
    /// round the cut (a failover) mitigates it, and it ends when `dependency` is whole
    /// again. Only an open incident takes it. Whether it changed.
    pub fn same_cut_seen_from(&mut self, dependency: &ServiceName, evidence: &str) -> bool {
        if !self.status.is_open() || self.waits_on.contains(dependency) || self.service == *dependency {
            return false;
        }
        self.waits_on.push(dependency.clone());
        if self.status == IncidentStatus::Mitigated {
            self.still_failing.push(format!("`{dependency}` unreachable"));
        }
        self.link(format!("the same cut, seen from `{dependency}`'s own probes: {evidence}"));
        true
    }

    /// Whether this incident explains a failure of `mode` on `service`: a lower layer of its
    /// own service, or a symptom (a database or API check failing) of a dependency whose
    /// path it has seen cut from both ends: checks across the cut fail with it, the same
    /// fault. The dependency's own facts (its disk, its memory, its port) are its own.
    pub fn explains(&self, service: &ServiceName, mode: FailureMode) -> bool {
        (self.service == *service && crate::detect::explains(self.mode, mode))
            || (self.waits_on.contains(service) && crate::detect::explained_by_dependency(mode))
    }

    /// A detector reported the same fault again while the incident is open.
    pub fn note_finding(&mut self, now_unix_ms: u64) {
        self.findings = self.findings.saturating_add(1);
        self.last_finding_unix_ms = Some(now_unix_ms);
    }

    /// The step that is due now for an open incident that waits for governance: its
    /// throttled playbook, once the time has come. `None` otherwise.
    pub fn due(&self, now_unix_ms: u64) -> Option<NextStep> {
        let last = self.attempts.last()?;
        match (self.status, last.outcome, last.retry_at_unix_ms) {
            (IncidentStatus::Open, Some(RunOutcome::Throttled | RunOutcome::Held), Some(at)) if now_unix_ms >= at => {
                Some(NextStep::Run { playbook: last.playbook.clone() })
            }
            _ => None,
        }
    }

    /// The first step for a fresh incident: its mode's first playbook, or escalation when
    /// the catalog has none (the incident is then failed).
    /// The plan comes from the diagnosis (the cause's playbooks first).
    /// `unmet` says what the service lacks for a playbook (empty: it applies).
    pub fn first_step(&mut self, catalog: &Catalog, unmet: impl Fn(&Playbook) -> Vec<String>) -> NextStep {
        let plan = plan(self.mode, self.cause, catalog, unmet);
        self.plan = plan.order;
        self.not_applicable = plan.not_applicable;
        match self.plan.first() {
            Some(p) => NextStep::Run { playbook: p.clone() },
            None if self.not_applicable.is_empty() => {
                self.escalate(format!("no playbook handles failure mode {}", self.mode.as_str()))
            }
            None => self.escalate(format!(
                "no playbook for {} applies to `{}`: {}",
                self.mode.as_str(),
                self.service,
                self.not_applicable.join("; ")
            )),
        }
    }

    /// The playbooks this incident tries, in order: its plan, or (for an incident stored
    /// before plans) the mode's catalog order.
    fn planned(&self, catalog: &Catalog) -> Vec<String> {
        if self.plan.is_empty() {
            catalog.for_mode(self.mode).into_iter().map(|p| p.id.clone()).collect()
        } else {
            self.plan.iter().filter(|id| catalog.get(id).is_some()).cloned().collect()
        }
    }

    /// `playbook` is due but a hold on automatic repair keeps it (`why`); it runs once the
    /// hold lifts. Whether this is news (not already held so).
    pub fn hold(&mut self, playbook: &str, why: &str) -> bool {
        let news = self.on_hold.as_deref() != Some(playbook) || !self.detail.ends_with(why);
        self.on_hold = Some(playbook.to_string());
        self.detail = format!("`{playbook}` waits: {why}");
        news
    }

    /// Records that run `run_id` of `playbook` has started.
    pub fn begin(&mut self, run_id: u64, playbook: &str) {
        self.on_hold = None;
        self.status = IncidentStatus::Open;
        self.attempts.push(Attempt {
            run_id,
            playbook: playbook.to_string(),
            outcome: None,
            retry_at_unix_ms: None,
            approval_id: None,
        });
    }

    /// The run this incident waits for, if any.
    pub fn current_run(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.outcome.is_none())
    }

    /// Applies the end of `run` and says what follows. `None` when the run is not the one
    /// this incident waits for (a duplicate or late notice): nothing changes then, so a
    /// notice delivered twice (once live, once by reconciliation) is harmless.
    pub fn finish_run(&mut self, run: &RunRecord, catalog: &Catalog) -> Option<NextStep> {
        if !self.status.is_open() || !run.outcome.is_final() {
            return None;
        }
        let current = self.attempts.last_mut().filter(|a| a.run_id == run.run_id && a.outcome.is_none())?;
        current.outcome = Some(run.outcome);
        current.retry_at_unix_ms = run.retry_at_unix_ms;
        current.approval_id = run.approval_id;
        let playbook = current.playbook.clone();
        let count = |outcome: fn(RunOutcome) -> bool| {
            self.attempts.iter().filter(|a| a.playbook == playbook && a.outcome.is_some_and(outcome)).count()
        };
        let step = match run.outcome {
            // A quarantine ends the trying, not the fault: a person must look.
            RunOutcome::Succeeded if run.steps.iter().any(|s| s.done() && s.action == "quarantine_service") => self
                .escalate(format!(
                    "`{playbook}` quarantined `{}`: nothing else healed it; release it once the cause is fixed",
                    self.service
                )),
            RunOutcome::Succeeded => {
                let at = run.finished_unix_ms.unwrap_or(self.detected_unix_ms);
                self.restored_unix_ms = Some(
                    run.restored_unix_ms.unwrap_or(at).clamp(self.detected_unix_ms, at.max(self.detected_unix_ms)),
                );
                if !run.still_failing.is_empty() || !self.waits_on.is_empty() {
                    self.status = IncidentStatus::Mitigated;
                    self.still_failing = run.still_failing.clone();
                    self.still_failing.extend(self.waits_on.iter().map(|d| format!("`{d}` unreachable")));
                    self.detail =
                        format!("mitigated by `{playbook}`; still failing: {}", self.still_failing.join("; "));
                    return Some(NextStep::Mitigated { still_failing: self.still_failing.clone() });
                }
                self.status = IncidentStatus::Resolved;
                self.resolved_unix_ms = Some(at.max(self.detected_unix_ms));
                NextStep::Resolved { mttr_ms: self.mttr_ms().unwrap_or(0) }
            }
            // The harm guard held a step (a lower layer or a dependency fails): the same
            // playbook once more after a wait that doubles with every hold.
            RunOutcome::Held if count(|o| o == RunOutcome::Held) >= MAX_HOLDS => {
                self.move_on(&playbook, &format!("held {MAX_HOLDS} times: {}", run.detail), catalog)
            }
            RunOutcome::Held => {
                let holds = count(|o| o == RunOutcome::Held).min(16) as u32;
                let wait = HOLD_RETRY_MS.saturating_mul(1 << holds.saturating_sub(1)).min(HOLD_RETRY_MAX_MS);
                let retry_at = run.finished_unix_ms.unwrap_or(self.detected_unix_ms) + wait;
                if let Some(a) = self.attempts.last_mut() {
                    a.retry_at_unix_ms = Some(retry_at);
                }
                NextStep::Wait { playbook, retry_at_unix_ms: retry_at, reason: run.detail.clone() }
            }
            RunOutcome::Interrupted if count(|o| o == RunOutcome::Interrupted) <= MAX_INTERRUPTIONS => {
                NextStep::Run { playbook }
            }
            // Held, not refused: the same playbook runs again when governance allows it.
            RunOutcome::Throttled => NextStep::Wait {
                playbook,
                retry_at_unix_ms: run.retry_at_unix_ms.unwrap_or(run.finished_unix_ms.unwrap_or(0) + 60_000),
                reason: run.detail.clone(),
            },
            RunOutcome::PendingApproval if run.approval_id.is_some() => {
                self.status = IncidentStatus::AwaitingApproval;
                NextStep::AwaitApproval {
                    playbook,
                    approval_id: run.approval_id.unwrap_or_default(),
                    reason: run.detail.clone(),
                }
            }
            RunOutcome::Failed
                if count(|o| o == RunOutcome::Failed)
                    <= catalog.get(&playbook).map_or(0, |p| p.max_retries as usize) =>
            {
                NextStep::Run { playbook }
            }
            outcome => self.move_on(&playbook, &format!("{}: {}", outcome.as_str(), run.detail), catalog),
        };
        Some(step)
    }

    /// The next untried playbook of the mode, or escalation when none is left.
    fn move_on(&mut self, playbook: &str, why: &str, catalog: &Catalog) -> NextStep {
        let tried: Vec<&str> = self.attempts.iter().map(|a| a.playbook.as_str()).collect();
        match self.planned(catalog).into_iter().find(|p| !tried.contains(&p.as_str())) {
            Some(next) => NextStep::Run { playbook: next },
            None => {
                self.escalate(format!("every playbook for {} failed; last: `{playbook}` {why}", self.mode.as_str()))
            }
        }
    }

    /// The approval this incident waits for, if it waits for one.
    pub fn awaited_approval(&self) -> Option<u64> {
        (self.status == IncidentStatus::AwaitingApproval).then(|| self.attempts.last()?.approval_id).flatten()
    }

    /// What an approver's decision on the awaited request means: approved, the same
    /// playbook runs again (its step is now granted); rejected or expired, the incident
    /// moves on like after a refused run. `None` while it is still pending (or not the
    /// awaited one).
    pub fn approval_settled(&mut self, approval: &Approval, catalog: &Catalog) -> Option<NextStep> {
        if self.awaited_approval() != Some(approval.id) {
            return None;
        }
        let playbook = self.attempts.last()?.playbook.clone();
        match approval.status {
            ApprovalStatus::Pending => None,
            ApprovalStatus::Approved | ApprovalStatus::Used => {
                self.status = IncidentStatus::Open;
                Some(NextStep::Run { playbook })
            }
            ApprovalStatus::Rejected | ApprovalStatus::Expired => {
                self.status = IncidentStatus::Open;
                let why = match approval.votes.iter().find(|v| !v.approve) {
                    Some(v) => format!("approval {} rejected by {}: {}", approval.id, v.by, v.reason),
                    None => format!("approval {} expired undecided", approval.id),
                };
                Some(self.move_on(&playbook, &why, catalog))
            }
        }
    }

    /// Gives up on it now (a budget spent, a cause no playbook can reach): failed, for a
    /// person.
    pub fn escalate_now(&mut self, reason: String) -> NextStep {
        self.escalate(reason)
    }

    fn escalate(&mut self, reason: String) -> NextStep {
        self.status = IncidentStatus::Failed;
        self.detail = reason.clone();
        NextStep::Escalate { reason }
    }

    /// Playbooks tried, in order, each once.
    pub fn playbooks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in &self.attempts {
            if !out.contains(&a.playbook.as_str()) {
                out.push(&a.playbook);
            }
        }
        out
    }

    /// Detection to verified restore; `None` while open or when it failed.
    pub fn mttr_ms(&self) -> Option<u64> {
        match (self.status, self.restored_unix_ms.or(self.resolved_unix_ms)) {
            (IncidentStatus::Resolved, Some(end)) => Some(end.saturating_sub(self.detected_unix_ms)),
            _ => None,
        }
    }

    /// Fault onset (the first sign of it) to verified restore, where the onset is known.
    pub fn mttr_from_onset_ms(&self) -> Option<u64> {
        let end = self.mttr_ms().and(self.restored_unix_ms.or(self.resolved_unix_ms))?;
        Some(end.saturating_sub(self.fault_onset_unix_ms?.min(self.detected_unix_ms)))
    }

    /// The MTTR users see: from the fault's onset where known, from detection otherwise,
    /// and which of the two it is.
    pub fn mttr(&self) -> Option<(u64, MttrFrom)> {
        match self.mttr_from_onset_ms() {
            Some(ms) => Some((ms, MttrFrom::Onset)),
            None => Some((self.mttr_ms()?, MttrFrom::Detection)),
        }
    }

    /// Whether the first playbook chosen resolved it (the confidence SLO).
    pub fn resolved_by_first_playbook(&self) -> bool {
        self.status == IncidentStatus::Resolved && self.playbooks().len() == 1
    }
}

/// Where an MTTR is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MttrFrom {
    /// The first sign of the fault (its first failed check, the exit, the deadline passing).
    Onset,
    /// The detector's finding.
    Detection,
}

/// MTTR figures of one failure mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeStats {
    pub mode: FailureMode,
    pub incidents: usize,
    pub resolved: usize,
    pub failed: usize,
    pub open: usize,
    /// Percentiles (HDR histogram, 3 significant digits) of the MTTR as [`Incident::mttr`]
    /// gives it; `None` when nothing was resolved.
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// MTTR percentiles per failure mode, every mode listed (zeros for the quiet ones).
pub fn per_mode(incidents: &[Incident]) -> Vec<ModeStats> {
    FailureMode::ALL
        .into_iter()
        .map(|mode| {
            let of: Vec<&Incident> = incidents.iter().filter(|i| i.mode == mode).collect();
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 24 * 3_600_000, 3).ok();
            for ms in of.iter().filter_map(|i| i.mttr()).map(|(ms, _)| ms.max(1)) {
                if let Some(h) = h.as_mut() {
                    let _ = h.record(ms.min(24 * 3_600_000));
                }
            }
            let q = |q: f64| h.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q));
            ModeStats {
                mode,
                incidents: of.len(),
                resolved: of.iter().filter(|i| i.status == IncidentStatus::Resolved).count(),
                failed: of.iter().filter(|i| i.status.unhealed()).count(),
                open: of.iter().filter(|i| i.status.is_open()).count(),
                p50_ms: q(0.5),
                p90_ms: q(0.9),
                p99_ms: q(0.99),
                max_ms: h.as_ref().filter(|h| !h.is_empty()).map(|h| h.max()),
            }
        })
        .collect()
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
    /// Faults that went away by themselves (not counted in the success rate).
    #[serde(default)]
    pub cleared: usize,
    /// Resolved ÷ (resolved + failed), as a percentage; `None` when nothing has finished.
    pub success_rate_pct: Option<f64>,
}

/// Rolling MTTR and success rate; `incidents` are in opening order.
pub fn summarize(incidents: &[Incident], window: usize) -> MttrSummary {
    let mttrs: Vec<u64> = incidents.iter().filter_map(|i| i.mttr().map(|(ms, _)| ms)).collect();
    let last: Vec<u64> = mttrs.iter().rev().take(window.max(1)).copied().collect();
    let rolling = (!last.is_empty()).then(|| last.iter().sum::<u64>() as f64 / last.len() as f64);
    let count = |s| incidents.iter().filter(|i| i.status == s).count();
    let (resolved, failed, open) = (
        count(IncidentStatus::Resolved),
        incidents.iter().filter(|i| i.status.unhealed()).count(),
        incidents.iter().filter(|i| i.status.is_open()).count(),
    );
    let finished = resolved + failed;
    MttrSummary {
        rolling_mttr_ms: rolling,
        window: window.max(1),
        resolved,
        failed,
        open,
        cleared: count(IncidentStatus::Cleared),
        success_rate_pct: (finished > 0).then(|| resolved as f64 * 100.0 / finished as f64),
    }
}

/// An open incident as alerting sees it: while its repair runs, alerts about its service
/// (and the services that depend on it) wait; once it is `overdue` a person is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderRepair {
    pub incident_id: u64,
    pub service: ServiceName,
    pub mode: FailureMode,
    /// Open longer than policy allows (`healing.mttr_alert_ms`).
    pub overdue: bool,
}

/// The open incidents, as [`UnderRepair`], at `now`.
pub fn under_repair<'a>(
    incidents: impl IntoIterator<Item = &'a Incident>,
    now_unix_ms: u64,
    limit_ms: u64,
) -> Vec<UnderRepair> {
    incidents
        .into_iter()
        // Waiting for an approver is waiting for a person: nothing is held for it.
        .filter(|i| i.status == IncidentStatus::Open)
        .map(|i| UnderRepair {
            incident_id: i.id,
            service: i.service.clone(),
            mode: i.mode,
            overdue: now_unix_ms.saturating_sub(i.detected_unix_ms) > limit_ms,
        })
        .collect()
}

/// The repair a probe alert about `target` waits for, if any: an open incident on the
/// target itself or on one of `dependencies` (the services it relies on, all the way
/// down), whose repair is still within its time. An overdue repair holds nothing back.
pub fn held_by<'a>(
    target: &ServiceName,
    dependencies: &[ServiceName],
    repairs: &'a [UnderRepair],
) -> Option<&'a UnderRepair> {
    repairs.iter().filter(|r| !r.overdue).find(|r| r.service == *target || dependencies.contains(&r.service))
}

/// Why an unfinished incident needs a person now, if it does: its repair waits for an
/// approver; automatic repair of it is off, paused by a person or stopped by the breaker
/// (`holds`: the kinds of every hold on its service, its own and the node's); or it has
/// been open past the MTTR limit. None when it is acknowledged (a person is on it), in
/// maintenance (someone is at work on it, whatever else holds it) or held only a moment
/// for an operator's own action.
pub fn needs_person(
    i: &Incident,
    holds: &[crate::holds::HoldKind],
    healing_on: bool,
    now_unix_ms: u64,
    limit_ms: u64,
) -> Option<String> {
    use crate::holds::HoldKind;
    if !i.status.is_open() || i.acknowledged.is_some() || holds.contains(&HoldKind::Maintenance) {
        return None;
    }
    if i.status == IncidentStatus::AwaitingApproval {
        return Some(format!("its repair waits for an approver: {}", i.detail));
    }
    if !healing_on {
        return Some("automatic repair is off (healing.enabled: false)".into());
    }
    if i.on_hold.is_some() && holds.iter().any(|k| matches!(k, HoldKind::Pause | HoldKind::Breaker)) {
        return Some(format!("automatic repair is held: {}", i.detail));
    }
    let open_ms = now_unix_ms.saturating_sub(i.detected_unix_ms);
    (open_ms > limit_ms).then(|| format!("open {} s, past the MTTR limit of {} s", open_ms / 1000, limit_ms / 1000))
}

/// An api_timeout incident for tests: its attempts are runs of `playbooks`, in order.
#[cfg(test)]
pub(crate) fn fixture(
    id: u64,
    status: IncidentStatus,
    detected: u64,
    resolved: Option<u64>,
    playbooks: &[&str],
) -> Incident {
    Incident {
        id,
        mode: FailureMode::ApiTimeout,
        service: ServiceName::parse("api").expect("a valid name"),
        evidence: String::new(),
        detected_unix_ms: detected,
        fault_onset_unix_ms: None,
        resolved_unix_ms: resolved,
        status,
        attempts: playbooks
            .iter()
            .map(|p| Attempt {
                run_id: id,
                playbook: (*p).into(),
                outcome: None,
                retry_at_unix_ms: None,
                approval_id: None,
            })
            .collect(),
        detail: String::new(),
        findings: 1,
        last_finding_unix_ms: None,
        suppressed: vec![],
        cause: Cause::Unknown,
        plan: vec![],
        trace: None,
        not_applicable: vec![],
        restored_unix_ms: None,
        still_failing: vec![],
        waits_on: vec![],
        absorbed_by: None,
        acknowledged: None,
        closed: None,
        on_hold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use std::path::Path;

    fn api() -> ServiceName {
        ServiceName::parse("api").expect("name")
    }

    fn incident(id: u64, status: IncidentStatus, detected: u64, resolved: Option<u64>) -> Incident {
        fixture(id, status, detected, resolved, &["restart_hung_service"])
    }

    /// Two playbooks for api_timeout: `first` (one retry) and `second` (none).
    fn catalog() -> Catalog {
        let pb = |id: &str, retries: u32| {
            format!(
                "  - id: {id}\n    name: n\n    description: d\n    category: service\n    tier: 2\n    triggers: [api_timeout]\n    max_retries: {retries}\n    timeout_ms: 1000\n    steps:\n      - do: restart_service\n"
            )
        };
        let text = format!("playbooks:\n{}{}", pb("first", 1), pb("second", 0));
        Catalog::load(&Source { name: "c.yaml", dir: Path::new("."), text: &text }).expect("catalog")
    }

    fn run(run_id: u64, playbook: &str, outcome: RunOutcome, finished: u64) -> RunRecord {
        RunRecord {
            run_id,
            incident_id: Some(1),
            playbook: playbook.into(),
            target: api(),
            started_unix_ms: finished.saturating_sub(10),
            finished_unix_ms: Some(finished),
            outcome,
            steps: vec![],
            detail: "it broke".into(),
            retry_at_unix_ms: None,
            approval_id: None,
            dry_run: false,
            rollback_of: None,
            rolled_back_by: None,
            restored_unix_ms: None,
            still_failing: vec![],
        }
    }

    fn fresh() -> Incident {
        let finding = Finding {
            mode: FailureMode::ApiTimeout,
            service: api(),
            evidence: "e".into(),
            first_sign_unix_ms: 900,
            cause: Cause::Unknown,
            persists: false,
        };
        Incident::open(1, &finding, 1_000)
    }

    #[test]
    fn test_lifecycle_retries_then_moves_on_then_escalates() {
        // first fails twice (one retry allowed), second fails once (none): then a person.
        let c = catalog();
        let mut i = fresh();
        assert_eq!(i.first_step(&c, |_| vec![]), NextStep::Run { playbook: "first".into() });
        i.begin(10, "first");
        assert_eq!(
            i.finish_run(&run(10, "first", RunOutcome::Failed, 1_100), &c),
            Some(NextStep::Run { playbook: "first".into() })
        );
        i.begin(11, "first");
        assert_eq!(
            i.finish_run(&run(11, "first", RunOutcome::Failed, 1_200), &c),
            Some(NextStep::Run { playbook: "second".into() })
        );
        i.begin(12, "second");
        let last = i.finish_run(&run(12, "second", RunOutcome::Failed, 1_300), &c);
        assert!(
            matches!(&last, Some(NextStep::Escalate { reason }) if reason.contains("`second` failed: it broke")),
            "{last:?}"
        );
        assert_eq!(i.status, IncidentStatus::Failed);
        assert_eq!(i.playbooks(), ["first", "second"]);
    }

    #[test]
    fn test_success_resolves_with_mttr_from_detection() {
        let c = catalog();
        let mut i = fresh();
        i.begin(10, "first");
        assert_eq!(
            i.finish_run(&run(10, "first", RunOutcome::Succeeded, 1_700), &c),
            Some(NextStep::Resolved { mttr_ms: 700 })
        );
        assert_eq!(
            (i.status, i.resolved_unix_ms, i.fault_onset_unix_ms),
            (IncidentStatus::Resolved, Some(1_700), Some(900))
        );
        assert!(i.resolved_by_first_playbook());
    }

    #[test]
    fn test_interrupted_run_is_rerun_and_stays_first_choice() {
        // warden's own crash says nothing about the playbook: rerun it, bounded.
        let c = catalog();
        let mut i = fresh();
        for n in 0..MAX_INTERRUPTIONS as u64 {
            i.begin(10 + n, "second");
            assert_eq!(
                i.finish_run(&run(10 + n, "second", RunOutcome::Interrupted, 1_100), &c),
                Some(NextStep::Run { playbook: "second".into() })
            );
        }
        i.begin(20, "second");
        let moved = i.finish_run(&run(20, "second", RunOutcome::Interrupted, 1_200), &c);
        assert_eq!(moved, Some(NextStep::Run { playbook: "first".into() }), "past the bound it moves on");
    }

    #[test]
    fn test_a_throttled_run_waits_and_the_same_playbook_is_due_when_allowed() {
        // A rate limit holds the playbook: the incident stays open, nothing else is tried,
        // and the same playbook is due once governance would allow it.
        let c = catalog();
        let mut i = fresh();
        i.begin(10, "first");
        let held = RunRecord { retry_at_unix_ms: Some(5_000), ..run(10, "first", RunOutcome::Throttled, 1_100) };
        assert!(matches!(i.finish_run(&held, &c), Some(NextStep::Wait { retry_at_unix_ms: 5_000, .. })));
        assert_eq!(i.status, IncidentStatus::Open);
        assert_eq!(i.due(4_999), None, "not before");
        assert_eq!(i.due(5_000), Some(NextStep::Run { playbook: "first".into() }));
        i.note_finding(5_100);
        assert_eq!(i.findings, 2);
    }

    #[test]
    fn test_duplicate_or_stale_run_notice_changes_nothing() {
        let c = catalog();
        let mut i = fresh();
        i.begin(10, "first");
        let done = run(10, "first", RunOutcome::Succeeded, 1_500);
        assert!(i.finish_run(&done, &c).is_some());
        let before = i.clone();
        assert_eq!(i.finish_run(&done, &c), None, "delivered twice");
        assert_eq!(i.finish_run(&run(9, "first", RunOutcome::Failed, 1_600), &c), None, "an older run");
        assert_eq!(i, before);
    }

    #[test]
    fn test_mode_without_playbook_escalates_at_once() {
        let c = catalog();
        let finding = Finding {
            mode: FailureMode::DiskFull,
            service: api(),
            evidence: "e".into(),
            first_sign_unix_ms: 1,
            cause: Cause::Unknown,
            persists: false,
        };
        let mut i = Incident::open(2, &finding, 5);
        assert!(matches!(i.first_step(&c, |_| vec![]), NextStep::Escalate { .. }));
        assert_eq!(i.status, IncidentStatus::Failed);
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
    fn test_repairs_under_way_say_which_are_past_the_limit() {
        let all = [
            incident(1, IncidentStatus::Open, 0, None),
            incident(2, IncidentStatus::Open, 100_000, None),
            incident(3, IncidentStatus::Resolved, 0, Some(1)),
        ];
        let repairs = under_repair(&all, 130_000, 120_000);
        assert_eq!(repairs.iter().map(|r| (r.incident_id, r.overdue)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);
    }

    #[test]
    fn test_an_incident_waits_for_its_approval_then_reruns_or_moves_on() {
        use crate::approval::{Approval, ApprovalStatus, Origin};
        use crate::audit::AuditActor;
        use crate::policy::ActionRequest;
        let mut i = fresh();
        assert!(matches!(i.first_step(&catalog(), |_| vec![]), NextStep::Run { .. }));
        i.begin(10, "first");
        let held = RunRecord { approval_id: Some(5), ..run(10, "first", RunOutcome::PendingApproval, 1_100) };
        let step = i.finish_run(&held, &catalog()).expect("applies");
        assert!(matches!(step, NextStep::AwaitApproval { approval_id: 5, .. }), "{step:?}");
        assert_eq!((i.status, i.status.as_str()), (IncidentStatus::AwaitingApproval, "awaiting_approval"));
        assert!(i.status.is_open());
        let mut approval = Approval {
            id: 5,
            request: ActionRequest {
                action: "restart_service".into(),
                tier: crate::tier::Tier::DESTRUCTIVE,
                target: "api".into(),
                rationale: "r".into(),
                actor: AuditActor::System,
                incident_id: Some(1),
                run_id: Some(10),
                plan: String::new(),
                touches: Vec::new(),
            },
            plan: String::new(),
            origin: Origin::Incident { incident_id: 1, run_id: 10 },
            requested_unix_ms: 0,
            expires_unix_ms: 10_000,
            required: 1,
            votes: vec![],
            status: ApprovalStatus::Pending,
            closed_unix_ms: None,
            audit_seq: 1,
        };
        assert_eq!(i.approval_settled(&approval, &catalog()), None, "still pending");
        let mut rejected = i.clone();
        approval.decide("alice", true, "", 2_000).expect("vote");
        assert_eq!(i.approval_settled(&approval, &catalog()), Some(NextStep::Run { playbook: "first".into() }));
        assert_eq!(i.status, IncidentStatus::Open);
        let mut no = approval.clone();
        no.status = ApprovalStatus::Pending;
        no.votes.clear();
        no.decide("bob", false, "not now", 2_000).expect("vote");
        let step = rejected.approval_settled(&no, &catalog()).expect("settled");
        assert_eq!(step, NextStep::Run { playbook: "second".into() }, "rejected: the next playbook");
    }

    #[test]
    fn test_a_fault_that_clears_closes_only_an_incident_without_a_run() {
        let mut i = fresh();
        i.begin(10, "first");
        assert!(!i.fault_cleared(2_000), "a run under way verifies for itself");
        i.attempts[0].outcome = Some(RunOutcome::Throttled);
        assert!(i.fault_cleared(2_000), "held by governance: nothing ran, the fault went");
        assert_eq!((i.status, i.mttr_ms(), i.status.is_open()), (IncidentStatus::Cleared, None, false));
        assert!(!i.fault_cleared(3_000), "once");
    }

    #[test]
    fn test_a_fault_that_comes_back_reopens_with_the_next_playbook() {
        let mut i = fresh();
        i.begin(10, "first");
        assert!(matches!(
            i.finish_run(&run(10, "first", RunOutcome::Succeeded, 1_500), &catalog()),
            Some(NextStep::Resolved { .. })
        ));
        assert_eq!(i.reopen("seen again", &catalog()), NextStep::Run { playbook: "second".into() });
        assert_eq!((i.status, i.resolved_unix_ms), (IncidentStatus::Open, None));
        i.begin(11, "second");
        i.finish_run(&run(11, "second", RunOutcome::Succeeded, 2_500), &catalog());
        assert!(matches!(i.reopen("again", &catalog()), NextStep::Escalate { .. }), "nothing left: a person");
        assert_eq!(i.status, IncidentStatus::Failed);
        assert!(i.link("api: api_timeout".into()) && !i.link("api: api_timeout".into()), "linked once");
    }

    #[test]
    fn test_a_repair_that_leaves_a_lower_layer_failing_mitigates_until_it_recovers() {
        // A failover made the service serve again while its link is still cut.
        let c = catalog();
        let mut i = fresh();
        i.begin(10, "first");
        let failover = RunRecord {
            restored_unix_ms: Some(1_300),
            still_failing: vec!["app-link (l2): down".into()],
            ..run(10, "first", RunOutcome::Succeeded, 1_700)
        };
        let step = i.finish_run(&failover, &c);
        assert_eq!(step, Some(NextStep::Mitigated { still_failing: vec!["app-link (l2): down".into()] }));
        assert!(i.status.is_open() && i.status == IncidentStatus::Mitigated);
        assert_eq!(i.mttr_ms(), None, "not resolved yet");
        assert!(!i.fault_cleared(8_000), "one finding gone is not the whole service back");
        assert!(i.lower_recovered(9_000), "the link came back");
        assert_eq!((i.status, i.mttr_ms()), (IncidentStatus::Resolved, Some(300)), "MTTR counts to the mitigation");
    }

    #[test]
    fn test_a_cut_seen_from_both_ends_is_one_incident_mitigated_until_the_far_end_is_whole() {
        let c = catalog();
        let db = ServiceName::parse("db").expect("name");
        let mut i = fresh();
        i.begin(10, "first");
        assert!(i.same_cut_seen_from(&db, "probe `db-link`: down"), "linked while its repair runs");
        assert!(!i.same_cut_seen_from(&db, "probe `db-route`: unreachable"), "once per dependency");
        assert!(!i.same_cut_seen_from(&i.service.clone(), "itself"), "not its own service");
        let step = i.finish_run(&run(10, "first", RunOutcome::Succeeded, 1_700), &c);
        assert_eq!(step, Some(NextStep::Mitigated { still_failing: vec!["`db` unreachable".into()] }));
        assert_eq!(i.waits_on, vec![db.clone()]);
        assert!(i.lower_recovered(9_000), "the far end is whole again");
        assert_eq!(i.status, IncidentStatus::Resolved);
        let mut late = fresh();
        late.begin(10, "first");
        late.finish_run(&run(10, "first", RunOutcome::Succeeded, 1_700), &c);
        assert_eq!(late.status, IncidentStatus::Resolved);
        assert!(!late.same_cut_seen_from(&db, "probe `db-link`: down"), "a resolved one takes nothing");
        assert!(late.waits_on.is_empty() && late.suppressed.is_empty());
    }

    #[test]
    fn test_a_cut_explains_the_far_ends_upper_layers_too() {
        let db = ServiceName::parse("db").expect("name");
        let mut i = fresh();
        i.mode = FailureMode::NetworkUnreachable;
        let app = i.service.clone();
        assert!(i.explains(&app, FailureMode::DatabaseUnavailable), "its own upper layer");
        assert!(!i.explains(&db, FailureMode::DatabaseUnavailable), "not yet seen cut from `db`");
        i.begin(10, "first");
        assert!(i.same_cut_seen_from(&db, "probe `db-link`: down"));
        assert!(i.explains(&db, FailureMode::DatabaseUnavailable), "`db`'s SQL check across the cut");
        assert!(i.explains(&db, FailureMode::ApiTimeout));
        assert!(!i.explains(&db, FailureMode::DiskFull), "a full disk is not the cut");
        assert!(!i.explains(&db, FailureMode::NetworkUnreachable), "the cut itself is linked, not explained");
    }

    #[test]
    fn test_a_cut_is_linked_to_a_direct_dependents_incident_or_takes_the_dependencys_in() {
        let name = |n: &str| ServiceName::parse(n).expect("name");
        let (app, db) = (name("app"), name("db"));
        // app depends on db.
        let depends = |a: &ServiceName, b: &ServiceName| a.as_str() == "app" && b.as_str() == "db";
        let finding = |service: &ServiceName, mode: FailureMode, at: u64| Finding {
            mode,
            service: service.clone(),
            evidence: "down".into(),
            first_sign_unix_ms: at,
            cause: Cause::Unreachable,
            persists: false,
        };
        let nu = FailureMode::NetworkUnreachable;
        let app_incident = Incident::open(1, &finding(&app, nu, 10_000), 10_300);
        let seen = same_cut(&finding(&db, nu, 10_400), [&app_incident].into_iter(), depends);
        assert_eq!(seen, Some(SameCut::LinkTo(1)), "the far end of the app's cut");
        let later = same_cut(&finding(&db, nu, 60_000), [&app_incident].into_iter(), depends);
        assert_eq!(later, None, "a cut a minute later is a fault of its own");
        let other = same_cut(&finding(&db, FailureMode::DiskFull, 10_400), [&app_incident].into_iter(), depends);
        assert_eq!(other, None, "another mode is another fault");
        let db_incident = Incident::open(2, &finding(&db, nu, 10_000), 10_300);
        let first = same_cut(&finding(&app, nu, 10_200), [&db_incident].into_iter(), depends);
        assert_eq!(first, Some(SameCut::TakeIn(vec![2])), "the db's end seen first is taken in");
        let unrelated = |_: &ServiceName, _: &ServiceName| false;
        assert_eq!(same_cut(&finding(&db, nu, 10_400), [&app_incident].into_iter(), unrelated), None);
    }

    #[test]
    fn test_a_held_run_waits_longer_each_time_then_runs_again() {
        let c = catalog();
        let mut i = fresh();
        let mut waits = Vec::new();
        for n in 0..7u64 {
            i.begin(10 + n, "first");
            let held = run(10 + n, "first", RunOutcome::Held, 2_000);
            match i.finish_run(&held, &c) {
                Some(NextStep::Wait { retry_at_unix_ms, .. }) => waits.push(retry_at_unix_ms - 2_000),
                other => panic!("held runs wait: {other:?}"),
            }
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(i.due(2_000 + 29_999), None);
        assert_eq!(i.due(2_000 + 30_000), Some(NextStep::Run { playbook: "first".into() }), "the same playbook");
        for n in 7..MAX_HOLDS as u64 - 1 {
            i.begin(10 + n, "first");
            assert!(matches!(
                i.finish_run(&run(10 + n, "first", RunOutcome::Held, 2_000), &c),
                Some(NextStep::Wait { .. })
            ));
        }
        i.begin(99, "first");
        let last = i.finish_run(&run(99, "first", RunOutcome::Held, 2_000), &c);
        assert!(!matches!(last, Some(NextStep::Wait { .. })), "held {MAX_HOLDS} times, it gives way: {last:?}");
    }

    #[test]
    fn test_an_absorbed_incident_stops_and_a_person_may_ack_and_close_any() {
        let mut upper = fresh();
        assert!(upper.absorb(7, "the link is down", 2_000));
        assert_eq!(
            (upper.status, upper.absorbed_by, upper.status.is_open()),
            (IncidentStatus::Absorbed, Some(7), false)
        );
        assert!(!upper.absorb(8, "again", 3_000), "once");
        let note = |by: &str| OperatorNote { by: by.into(), at_unix_ms: 5_000, reason: "on it".into() };
        let mut failed = fresh();
        failed.status = IncidentStatus::Failed;
        assert!(failed.acknowledge(note("alice")).is_err(), "a failed incident is no one's to work on");
        assert!(failed.close(note("alice")).is_ok(), "but it can be closed");
        assert_eq!(failed.status, IncidentStatus::Closed);
        assert!(failed.close(note("bob")).is_err(), "once");
        let mut running = fresh();
        running.begin(3, "first");
        assert!(running.acknowledge(note("alice")).is_ok());
        assert!(running.close(note("alice")).is_err(), "not while its repair runs");
    }

    #[test]
    fn test_mttr_counts_from_the_onset_where_known_and_per_mode_percentiles() {
        let mut i = incident(1, IncidentStatus::Resolved, 1_000, Some(1_500));
        assert_eq!(i.mttr(), Some((500, MttrFrom::Detection)));
        i.fault_onset_unix_ms = Some(800);
        assert_eq!(i.mttr(), Some((700, MttrFrom::Onset)));
        assert_eq!(i.mttr_ms(), Some(500), "from detection is kept beside it");
        let many: Vec<Incident> = (1..=100).map(|n| incident(n, IncidentStatus::Resolved, 0, Some(n * 10))).collect();
        let stats = per_mode(&many);
        assert_eq!(stats.len(), 10, "every mode listed");
        let t = stats.iter().find(|s| s.mode == FailureMode::ApiTimeout).expect("api timeout");
        assert_eq!((t.incidents, t.resolved), (100, 100));
        assert_eq!(t.p50_ms, Some(500));
        assert_eq!(t.p99_ms, Some(990));
        let quiet = stats.iter().find(|s| s.mode == FailureMode::DiskFull).expect("disk");
        assert_eq!((quiet.incidents, quiet.p99_ms), (0, None));
    }

    #[test]
    fn test_an_incident_needs_a_person_when_its_repair_waits_for_one_or_runs_past_its_time() {
        use crate::holds::HoldKind;
        let limit = 120_000;
        let open = fixture(1, IncidentStatus::Open, 1_000, None, &[]);
        assert_eq!(needs_person(&open, &[], true, 60_000, limit), None, "under repair, in time");
        assert!(needs_person(&open, &[], true, 200_000, limit).is_some_and(|w| w.contains("MTTR limit")));
        assert!(needs_person(&open, &[], false, 2_000, limit).is_some_and(|w| w.contains("off")));
        let mut held = open.clone();
        held.hold("restart_service", "healing of `api` paused by ops: upgrade");
        assert!(needs_person(&held, &[HoldKind::Pause], true, 2_000, limit).is_some_and(|w| w.contains("paused")));
        assert!(needs_person(&held, &[HoldKind::Breaker], true, 2_000, limit).is_some());
        assert_eq!(needs_person(&held, &[HoldKind::Operator], true, 2_000, limit), None, "an operator's own act");
        assert!(
            needs_person(&held, &[HoldKind::Pause, HoldKind::Operator], true, 2_000, limit).is_some(),
            "an operator's hold beside a pause hides nothing"
        );
        assert_eq!(
            needs_person(&held, &[HoldKind::Pause, HoldKind::Maintenance], true, 200_000, limit),
            None,
            "someone is at work, whatever else holds it"
        );
        let awaiting = fixture(2, IncidentStatus::AwaitingApproval, 1_000, None, &[]);
        assert!(needs_person(&awaiting, &[], true, 2_000, limit).is_some_and(|w| w.contains("approver")));
        let mut acked = awaiting.clone();
        acked.acknowledged = Some(OperatorNote { by: "ops".into(), at_unix_ms: 1_500, reason: "on it".into() });
        assert_eq!(needs_person(&acked, &[], true, 200_000, limit), None, "a person is on it");
        let resolved = fixture(3, IncidentStatus::Resolved, 1_000, Some(5_000), &[]);
        assert_eq!(needs_person(&resolved, &[], false, 200_000, limit), None, "over");
    }

    #[test]
    fn test_alerts_wait_for_a_repair_of_their_service_or_a_dependency_in_time() {
        let name = |s: &str| ServiceName::parse(s).expect("name");
        let repair = |id, s: &str, overdue| UnderRepair {
            incident_id: id,
            service: name(s),
            mode: FailureMode::DatabaseUnavailable,
            overdue,
        };
        let repairs = vec![repair(1, "db", false), repair(2, "cache", true)];
        assert_eq!(held_by(&name("db"), &[], &repairs).map(|r| r.incident_id), Some(1), "its own repair");
        assert_eq!(held_by(&name("api"), &[name("db")], &repairs).map(|r| r.incident_id), Some(1), "a dependency's");
        assert!(held_by(&name("api"), &[name("cache")], &repairs).is_none(), "an overdue repair holds nothing");
        assert!(held_by(&name("web"), &[], &repairs).is_none(), "unrelated");
    }
}
