//! ApprovalQueue: tier 3 requests waiting for approvers, kept in the store.
//!
//! The gatekeeper parks a request here when policy wants an approver (production mode);
//! approvers decide through the API or the shell; the rules of a decision (one vote each,
//! not on one's own request, one rejection refuses, `approvals.required` approvals pass)
//! are `warden_core::approval`. Every vote and every expiry is audited, and stored, before
//! it is answered. Once a second, requests past their time expire (denied, or approved if
//! the policy says so). The gatekeeper asks for an approved request matching an action
//! and marks it used when it grants it: each approval allows one action.

use super::audit_writer::{AppendError, AuditWriter};
use crate::addr::{AbortOnDrop, Addr, SendError};
use crate::current::Current;
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Counter, Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use warden_core::approval::{Approval, ApprovalError, ApprovalStatus, Origin};
use warden_core::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind};
use warden_core::auth::Caller;
use warden_core::policy::{ActionRequest, Policies};

pub const PATH: &str = "governance/approval_queue";
const ASK_TIMEOUT: Duration = Duration::from_secs(15);
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApprovalOpError {
    #[error("no approval request {0}")]
    NotFound(u64),
    #[error(transparent)]
    Rule(#[from] ApprovalError),
    #[error("`{0}` is not an approver (the policy's approvers, or an admin)")]
    NotAnApprover(String),
    #[error("approval queue unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error("cannot store the approval: {0}")]
    Store(#[from] StoreError),
    #[error("cannot audit the approval: {0}")]
    Audit(#[from] AppendError),
}

type Reply = RpcReplyPort<Result<Approval, ApprovalOpError>>;

pub enum ApprovalMsg {
    Hold(Box<ActionRequest>, u64, Reply),
    Decide {
        id: u64,
        by: Caller,
        approve: bool,
        reason: String,
        reply: Reply,
    },
    Find(Box<ActionRequest>, RpcReplyPort<Option<Approval>>),
    Used(u64, RpcReplyPort<Result<(), ApprovalOpError>>),
    /// The incident that asked ended: its requests still open are withdrawn.
    Withdraw {
        incident_id: u64,
        why: String,
    },
    Tick,
}

impl Addr<ApprovalQueue> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Parks a request whose pending decision is audit entry `audit_seq`; the stored request.
    pub async fn hold(&self, request: ActionRequest, audit_seq: u64) -> Result<Approval, ApprovalOpError> {
        self.ask(ASK_TIMEOUT, |tx| ApprovalMsg::Hold(Box::new(request), audit_seq, tx)).await?
    }

    /// An approver's decision; the request as it stands after it.
    pub async fn decide(
        &self,
        id: u64,
        by: Caller,
        approve: bool,
        reason: String,
    ) -> Result<Approval, ApprovalOpError> {
        self.ask(ASK_TIMEOUT, |reply| ApprovalMsg::Decide { id, by, approve, reason, reply }).await?
    }

    /// An approved request that allows `request`, if there is one.
    pub async fn find(&self, request: ActionRequest) -> Result<Option<Approval>, SendError> {
        self.ask(ASK_TIMEOUT, |tx| ApprovalMsg::Find(Box::new(request), tx)).await
    }

    /// Withdraws the open requests of incident `incident_id` (best effort: an approval
    /// granted later for an incident that ended finds no run to serve).
    pub fn withdraw(&self, incident_id: u64, why: String) {
        if let Err(e) = self.tell(ApprovalMsg::Withdraw { incident_id, why }) {
            tracing::debug!(error = %e, "cannot withdraw the incident's approval requests");
        }
    }

    /// The approval was spent on a grant.
    pub async fn mark_used(&self, id: u64) -> Result<(), ApprovalOpError> {
        self.ask(ASK_TIMEOUT, |tx| ApprovalMsg::Used(id, tx)).await?
    }
}

pub struct ApprovalQueue {
    pub store: Store,
    pub metrics: crate::metrics::Metrics,
    pub policies: Current<Policies>,
    pub audit: Addr<AuditWriter>,
    pub registry: ActorRegistry,
}

pub struct State {
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ApprovalQueue {
    type Msg = ApprovalMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ApprovalMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State {
            _tick: AbortOnDrop(myself.send_interval(TICK, || ApprovalMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ApprovalMsg>,
        msg: ApprovalMsg,
        _: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ApprovalMsg::Hold(request, audit_seq, reply) => {
                let _ = reply.send(self.hold(*request, audit_seq).await);
            }
            ApprovalMsg::Decide { id, by, approve, reason, reply } => {
                let _ = reply.send(self.decide(id, &by, approve, &reason).await);
            }
            ApprovalMsg::Find(request, reply) => {
                let found = match self.store.recent_approvals(1000).await {
                    Ok(all) => {
                        let now = warden_core::time::now_unix_ms();
                        // Approved for something else than what it would act on now: refused,
                        // withdrawn, and asked again with the new plan.
                        for stale in all.iter().filter(|a| a.stale_for(&request, now)) {
                            let why = "what it would act on changed since it was approved (a process gone or replaced, other files)";
                            if let Err(e) = self.withdraw_one(stale.clone(), why).await {
                                tracing::warn!(approval = stale.id, error = %e, "cannot withdraw a stale approval");
                            }
                        }
                        all.into_iter().rev().find(|a| a.allows(&request, now))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the approvals");
                        None
                    }
                };
                let _ = reply.send(found);
            }
            ApprovalMsg::Used(id, reply) => {
                let _ = reply.send(self.used(id).await);
            }
            ApprovalMsg::Withdraw { incident_id, why } => {
                if let Err(e) = self.withdraw(incident_id, &why).await {
                    tracing::warn!(incident = incident_id, error = %e, "cannot withdraw the incident's approval requests");
                }
            }
            ApprovalMsg::Tick => {
                if let Err(e) = self.expire().await {
                    tracing::debug!(error = %e, "cannot expire approval requests yet");
                }
            }
        }
        // What waits for a person now, for the dashboards (every message, at least every tick).
        if let Ok(pending) = self.store.pending_approvals().await {
            self.metrics.approvals_pending.set(pending.len() as i64);
        }
        Ok(())
    }
}

impl ApprovalQueue {
    async fn hold(&self, request: ActionRequest, audit_seq: u64) -> Result<Approval, ApprovalOpError> {
        let rules = self.policies.get().approvals;
        let now = warden_core::time::now_unix_ms();
        let origin = match (request.incident_id, request.run_id, &request.actor) {
            (Some(incident_id), Some(run_id), _) => Origin::Incident { incident_id, run_id },
            (_, _, AuditActor::User(name)) => Origin::Operator { name: name.clone() },
            (_, _, AuditActor::System) => Origin::Operator { name: "system".into() },
        };
        let approval = Approval {
            id: self.store.next_id(Counter::Approval).await?,
            plan: request.plan.clone(),
            request,
            origin,
            requested_unix_ms: now,
            expires_unix_ms: now + rules.expire_after.as_millis() as u64,
            required: rules.required,
            votes: Vec::new(),
            status: ApprovalStatus::Pending,
            closed_unix_ms: None,
            audit_seq,
        };
        self.store.put_approval(approval.clone()).await?;
        tracing::warn!(
            approval = approval.id,
            action = approval.request.action,
            target = approval.request.target,
            required = approval.required,
            expires = warden_core::time::rfc3339(approval.expires_unix_ms),
            "alert: approval requested"
        );
        Ok(approval)
    }

    async fn decide(&self, id: u64, by: &Caller, approve: bool, reason: &str) -> Result<Approval, ApprovalOpError> {
        let policies = self.policies.get();
        if !warden_core::approval::may_approve(&policies.approvers, &by.name, by.role) {
            return Err(ApprovalOpError::NotAnApprover(by.name.clone()));
        }
        let mut approval = self.store.approval(id).await?.ok_or(ApprovalOpError::NotFound(id))?;
        let now = warden_core::time::now_unix_ms();
        let status = approval.decide(&by.name, approve, reason, now)?;
        let detail = match status {
            ApprovalStatus::Pending => format!("approved ({} of {} needed)", approval.approvals(), approval.required),
            ApprovalStatus::Approved => format!("approved by {}", approval.approvers().join(", ")),
            _ => format!("rejected: {reason}"),
        };
        self.audit_vote(&approval, AuditActor::User(by.name.clone()), approve, reason, detail).await?;
        self.store.put_approval(approval.clone()).await?;
        tracing::info!(approval = id, by = by.name, approve, status = status.as_str(), "approval decided");
        Ok(approval)
    }

    async fn used(&self, id: u64) -> Result<(), ApprovalOpError> {
        let mut approval = self.store.approval(id).await?.ok_or(ApprovalOpError::NotFound(id))?;
        approval.mark_used(warden_core::time::now_unix_ms());
        self.store.put_approval(approval).await?;
        Ok(())
    }

    async fn expire(&self) -> Result<(), ApprovalOpError> {
        let on_expiry = self.policies.get().approvals.on_expiry;
        let now = warden_core::time::now_unix_ms();
        for mut approval in self.store.pending_approvals().await? {
            if approval.expire(now, on_expiry) {
                let approve = approval.status == ApprovalStatus::Approved;
                let detail = format!("expired undecided; the policy says {}", if approve { "approve" } else { "deny" });
                self.audit_vote(&approval, AuditActor::System, approve, "no approver decided in time", detail).await?;
                self.store.put_approval(approval.clone()).await?;
                tracing::warn!(approval = approval.id, approved = approve, "alert: approval request expired");
            }
        }
        Ok(())
    }

    async fn withdraw(&self, incident_id: u64, why: &str) -> Result<(), ApprovalOpError> {
        let open = self.store.recent_approvals(1000).await?;
        for approval in open {
            if matches!(approval.origin, Origin::Incident { incident_id: i, .. } if i == incident_id) {
                self.withdraw_one(approval, why).await?;
            }
        }
        Ok(())
    }

    /// Withdraws one request still open (pending, or approved and unused), on the trail.
    async fn withdraw_one(&self, mut approval: Approval, why: &str) -> Result<(), ApprovalOpError> {
        if approval.withdraw(warden_core::time::now_unix_ms()) {
            let reason = format!("withdrawn: {why}");
            self.audit_vote(&approval, AuditActor::System, false, &reason, reason.clone()).await?;
            self.store.put_approval(approval.clone()).await?;
            tracing::info!(approval = approval.id, why, "approval request withdrawn");
        }
        Ok(())
    }

    /// A vote (or an expiry) on the trail: the action it is about, who decided and why.
    async fn audit_vote(
        &self,
        approval: &Approval,
        actor: AuditActor,
        approve: bool,
        reason: &str,
        detail: String,
    ) -> Result<(), ApprovalOpError> {
        let r = &approval.request;
        let record = AuditRecord {
            kind: EntryKind::Approval,
            actor,
            action: r.action.clone(),
            tier: r.tier.get(),
            target: r.target.clone(),
            rationale: format!("approval {}: {reason}", approval.id),
            decision: if approve { DecisionKind::Allow } else { DecisionKind::Deny },
            outcome: None,
            detail,
            incident_id: r.incident_id,
            run_id: r.run_id,
        };
        self.audit.append(record).await?;
        Ok(())
    }
}
